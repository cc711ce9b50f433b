import gc
import logging
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic.settings.base")

application = get_wsgi_application()

from django.conf import settings  # noqa: E402
from django.urls import get_resolver  # noqa: E402

logging.getLogger("clinic.runtime").info(settings.SERVICES.describe())

# Load every view now and move what is loaded out of the garbage collector's sight: the objects
# of the loaded application live as long as the process, and a full collection scanning them
# would stall a request for a few hundred milliseconds (a large availability answer allocates
# enough to trigger one).
get_resolver().url_patterns  # noqa: B018
gc.collect()
gc.freeze()
