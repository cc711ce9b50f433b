"""Settings shared by every environment. Configured only through environment variables."""

from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.utils.translation import gettext_lazy as _
from pghistory import config as pghistory_config

from clinic.runtime import resolve_services

from .env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent

SECRET_KEY = env_str(
    "DJANGO_SECRET_KEY", "insecure-development-key-change-me-in-production-0123456789"
)
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

SERVICES = resolve_services()

INSTALLED_APPS = [
    "clinic.core.admin_site.ClinicAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "pgtrigger",
    "pghistory",
    "pghistory.admin",
    "clinic.core",
    "clinic.accounts",
    "clinic.audit",
    "clinic.outbox",
    "clinic.api",
    "clinic.web",
    "patients",
    "scheduling",
    "desk",
    "telephony",
    "billing",
    "lab",
    "integrations",
    "devices",
    "portal",
    "messaging",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "clinic.accounts.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "clinic.accounts.middleware.IdleTimeoutMiddleware",
    "clinic.accounts.middleware.TwoFactorRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "pghistory.middleware.HistoryMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "clinic.urls"
WSGI_APPLICATION = "clinic.wsgi.application"
ASGI_APPLICATION = "clinic.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "clinic.web.context_processors.workplaces",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        SERVICES.database_url, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60)
    )
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = SERVICES.redis_url
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env_str("CLINIC_CACHE_PREFIX", "clinic"),
    }
}

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "web:home"
LOGOUT_REDIRECT_URL = "accounts:login"

# Sessions end after this much inactivity (sliding), checked on every request.
SESSION_IDLE_TIMEOUT = timedelta(minutes=env_int("CLINIC_SESSION_IDLE_MINUTES", 30))
SESSION_COOKIE_AGE = env_int("CLINIC_SESSION_MAX_HOURS", 12) * 3600
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

# Lockout per user name and IP together: one person's typos do not lock a shared reception PC.
AXES_FAILURE_LIMIT = env_int("CLINIC_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("CLINIC_LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "accounts/locked_out.html"
AXES_VERBOSE = False
AXES_IPWARE_META_PRECEDENCE_ORDER = ["REMOTE_ADDR"]

OTP_TOTP_ISSUER = env_str("CLINIC_OTP_ISSUER", "Clinic ERP")
# Roles whose members must pass TOTP verification after the password (and everyone in /admin/).
TWO_FACTOR_ROLES = ("administrator", "head_of_registry")

# Content-Security-Policy sent with every response (everything is served from this origin).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "font-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'self'; object-src 'none'"
)

LANGUAGE_CODE = env_str("CLINIC_LANGUAGE", "ru")
LANGUAGES = [("ru", _("Russian")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "clinic" / "locale"]
TIME_ZONE = env_str("CLINIC_TIME_ZONE", "Europe/Moscow")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "var" / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
MEDIA_ROOT = Path(env_str("CLINIC_MEDIA_ROOT", str(BASE_DIR / "var" / "media")))
MEDIA_URL = "/media/"

# How many reverse proxies stand in front of the web server: the client's address is then the
# one they append to X-Forwarded-For (0: the connection's own address; the header is ignored, so
# a client cannot choose its address for rate limits).
NUM_PROXIES = env_int("CLINIC_NUM_PROXIES", 0)

REST_FRAMEWORK = {
    "NUM_PROXIES": NUM_PROXIES,
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "clinic.api.errors.api_exception_handler",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Clinic ERP API",
    "DESCRIPTION": "Integration API of the clinic ERP. Errors share one JSON format: "
    '{"error": {"code", "message", "fields"}}.',
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # One schema name per choice set shared by several fields.
    "ENUM_NAME_OVERRIDES": {
        "ChannelEnum": "patients.models.Channel",
        "ConsentSourceEnum": "patients.models.ConsentSource",
        "ConsentKindEnum": "patients.models.ConsentKind",
        "ContactKindEnum": "patients.models.ContactKind",
        "OutboxStateEnum": "clinic.outbox.models.OutboxState",
        "ExceptionKindEnum": "scheduling.models.ExceptionKind",
        "BookingChannelEnum": "scheduling.models.BookingChannel",
        "ResourceKindEnum": "scheduling.models.ResourceKind",
        "RotationEnum": "scheduling.models.Rotation",
        "CalendarDayTypeEnum": "scheduling.models.CalendarDayType",
        "PayerKindEnum": "scheduling.models.PayerKind",
        "WaitlistStateEnum": "scheduling.models.WaitlistState",
        "OfferStateEnum": "scheduling.models.OfferState",
        "CallEventEnum": "telephony.models.CallEventKind",
    },
}

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = "UTC"
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(BASE_DIR / "var" / "celerybeat-schedule")

# The outbox relay: how often beat asks for due messages and how retries back off.
OUTBOX_RELAY_INTERVAL_SECONDS = env_int("CLINIC_OUTBOX_RELAY_SECONDS", 5)
OUTBOX_MAX_ATTEMPTS = env_int("CLINIC_OUTBOX_MAX_ATTEMPTS", 8)
OUTBOX_BACKOFF_BASE_SECONDS = env_int("CLINIC_OUTBOX_BACKOFF_SECONDS", 30)
OUTBOX_BACKOFF_MAX_SECONDS = env_int("CLINIC_OUTBOX_BACKOFF_MAX_SECONDS", 6 * 3600)
OUTBOX_BATCH_SIZE = env_int("CLINIC_OUTBOX_BATCH_SIZE", 50)

# Scheduling: how long a slot picked at a screen stays held for that person (Redis holds).
SLOT_HOLD_TTL_SECONDS = env_int("CLINIC_SLOT_HOLD_TTL_SECONDS", 300)
OUTBOX_CLAIM_SECONDS = env_int("CLINIC_OUTBOX_CLAIM_SECONDS", 300)

PGHISTORY_DEFAULT_TRACKERS = None
PGHISTORY_ADMIN_MODEL = "pghistory.MiddlewareEvents"
PGHISTORY_ADMIN_CLASS = "clinic.audit.admin.ClinicEventsAdmin"
PGHISTORY_ADMIN_ALL_EVENTS = False
# An event row copies its object's foreign keys for the record, and nothing looks events up by
# them: only the object and the context are indexed, so each tracked write maintains two indexes
# on its event table, not one per foreign key.
PGHISTORY_FOREIGN_KEY_FIELD = pghistory_config.ForeignKey(db_index=False)
PGHISTORY_OBJ_FIELD = pghistory_config.ObjForeignKey(db_index=True)
PGHISTORY_CONTEXT_FIELD = pghistory_config.ContextForeignKey(db_index=True)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("CLINIC_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
        "celery": {"level": "INFO"},
    },
}

DEMO_MODE = env_bool("CLINIC_DEMO_MODE", True)
# The login public bookings (the website's FHIR API, the portal) are made as: a staff account with
# the registrar role in the branches open to online booking. Empty: public booking is off.
WEBSITE_BOOKING_USERNAME = env_str("CLINIC_WEBSITE_BOOKING_USER", "website")
# Online payment of invoices in the patient portal. An empty gateway: patients pay at the clinic.
# The website account above posts these payments, so it also needs the cashier role.
PAYMENT_GATEWAY = {
    "gateway": env_str("CLINIC_PAYMENT_GATEWAY", ""),
    "shop_id": env_str("CLINIC_YOOKASSA_SHOP_ID", ""),
    "secret_key": env_str("CLINIC_YOOKASSA_SECRET_KEY", ""),
    "url": env_str("CLINIC_YOOKASSA_URL", ""),
}
# Senders trusted with payment notifications besides the gateway's published networks (a proxy,
# a test gateway). Notifications are only hints: each payment is read back from the gateway.
PAYMENT_NOTIFY_ADDRESSES = env_list("CLINIC_PAYMENT_NOTIFY_ADDRESSES", [])
# Where the site is reached from outside: links in messages, callback URLs for providers.
SITE_URL = env_str("CLINIC_SITE_URL", "http://127.0.0.1:8000")
# Patient messaging providers per channel. Twilio sends SMS and WhatsApp, SMTP sends e-mail;
# a channel without a provider is not used (its messages are marked failed with the reason).
_TWILIO = {
    "provider": "twilio" if env_str("CLINIC_TWILIO_ACCOUNT_SID", "") else "",
    "account_sid": env_str("CLINIC_TWILIO_ACCOUNT_SID", ""),
    "auth_token": env_str("CLINIC_TWILIO_AUTH_TOKEN", ""),
    "sms_from": env_str("CLINIC_TWILIO_SMS_FROM", ""),
    "whatsapp_from": env_str("CLINIC_TWILIO_WHATSAPP_FROM", ""),
    "messaging_service_sid": env_str("CLINIC_TWILIO_MESSAGING_SERVICE_SID", ""),
    "base_url": env_str("CLINIC_TWILIO_URL", ""),
}
MESSAGING_PROVIDERS = {
    "sms": _TWILIO,
    "whatsapp": _TWILIO,
    "email": {
        "provider": "smtp" if env_str("CLINIC_SMTP_HOST", "") else "",
        "host": env_str("CLINIC_SMTP_HOST", ""),
        "port": env_int("CLINIC_SMTP_PORT", 587),
        "username": env_str("CLINIC_SMTP_USER", ""),
        "password": env_str("CLINIC_SMTP_PASSWORD", ""),
        "use_tls": env_bool("CLINIC_SMTP_TLS", True),
        "from_email": env_str("CLINIC_SMTP_FROM", ""),
    },
}
# Patients cancel or reschedule online up to this many minutes before the visit.
PORTAL_CHANGE_NOTICE_MINUTES = env_int("CLINIC_PORTAL_CHANGE_NOTICE_MINUTES", 120)
# A patient's account session ends after this many idle minutes.
PORTAL_ACCOUNT_IDLE_MINUTES = env_int("CLINIC_PORTAL_ACCOUNT_IDLE_MINUTES", 30)
