"""/api/v1/billing/: the billing API."""

from django.urls import URLPattern, URLResolver, path

from . import api

urlpatterns: list[URLPattern | URLResolver] = [
    path("prices/lookup/", api.PriceLookupView.as_view(), name="billing-price-lookup"),
]
