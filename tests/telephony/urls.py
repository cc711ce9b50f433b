"""The URLs the telephony pages and their base template need, standing alone.

Used with ``pytest.mark.urls`` until clinic/urls.py includes telephony, and so that these tests
do not depend on other apps' URL modules (only on those the pages link to).
"""

from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path

urlpatterns: list[URLPattern | URLResolver] = [
    path("admin/", admin.site.urls),
    path("accounts/", include("clinic.accounts.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("desk/patients/", include("patients.urls")),
    path("desk/calls/", include("telephony.urls")),
    path("api/v1/telephony/", include("telephony.api_urls")),
    path("", include("clinic.web.urls")),
]
