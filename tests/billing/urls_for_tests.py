"""The project's URLs plus billing's, until clinic/urls.py includes them itself."""

from django.urls import URLPattern, URLResolver, include, path

from clinic import urls as project

_mounted = {str(pattern.pattern) for pattern in project.urlpatterns}

urlpatterns: list[URLPattern | URLResolver] = [
    *([path("billing/", include("billing.urls"))] if "billing/" not in _mounted else []),
    *(
        [path("api/v1/billing/", include("billing.api_urls"))]
        if "api/v1/billing/" not in _mounted
        else []
    ),
    *project.urlpatterns,
]
