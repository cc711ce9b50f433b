"""Settings of the portal feed benchmark's server: the test settings with a URLconf that adds a
trivial API view beside the project's URLs, so that the slot search is compared with the cost of
the bare request stack on the same server."""

from clinic.settings.test import *  # noqa: F403

ROOT_URLCONF = "tests.load.portal_urls"
