import logging
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic.settings.base")

application = get_wsgi_application()

from django.conf import settings  # noqa: E402

logging.getLogger("clinic.runtime").info(settings.SERVICES.describe())
