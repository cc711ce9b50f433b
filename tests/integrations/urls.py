"""The project's URLs plus the website feeds, mounted as clinic/urls.py is to mount them
(``fhir/`` and ``website/``), for as long as it does not yet."""

from django.urls import include, path

import clinic.urls

_mounted = {getattr(p, "namespace", None) for p in clinic.urls.urlpatterns}

urlpatterns = [
    *(
        []
        if "website-fhir" in _mounted
        else [path("fhir/", include("integrations.website.fhir_urls"))]
    ),
    *(
        []
        if "website-export" in _mounted
        else [path("website/", include("integrations.website.export_urls"))]
    ),
    *clinic.urls.urlpatterns,
]
