from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from django.views.i18n import JavaScriptCatalog
from django.views.static import serve

from clinic.core.health import healthz

urlpatterns = [
    path("healthz/", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("clinic.accounts.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("jsi18n/", JavaScriptCatalog.as_view(), name="javascript-catalog"),
    path("api/v1/telephony/", include("telephony.api_urls")),
    path("api/v1/billing/", include("billing.api_urls")),
    path("api/", include("clinic.api.urls")),
    path("desk/messages/", include("messaging.staff_urls")),
    path("desk/patients/", include("patients.urls")),
    path("desk/calls/", include("telephony.urls")),
    path("desk/", include("desk.urls")),
    path("billing/documents/", include("billing.document_urls")),
    path("billing/reports/", include("billing.report_urls")),
    path("billing/", include("billing.urls")),
    path("pos/", include("billing.pos_urls")),
    path("fhir/", include("integrations.website.fhir_urls")),
    path("website/", include("integrations.website.export_urls")),
    path("portal/feedback/", include("messaging.portal_urls")),
    path("portal/", include("portal.urls")),
    path("messaging/kpi/", include("messaging.kpi_urls")),
    path("messaging/", include("messaging.urls")),
    path("", include("clinic.web.urls")),
]

if settings.DEBUG or settings.DEMO_MODE:
    # Uploaded files (doctors' photos) for development and the demo; in production the reverse
    # proxy serves CLINIC_MEDIA_ROOT under /media/.
    urlpatterns.insert(
        0,
        re_path(r"^media/(?P<path>.*)$", serve, {"document_root": settings.MEDIA_ROOT}),
    )
