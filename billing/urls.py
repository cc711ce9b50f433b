"""Billing's pages and fragments, under /billing/."""

from django.urls import path

from . import views

app_name = "billing"

urlpatterns = [
    path("price-lookup/", views.price_lookup_fragment, name="price_lookup"),
]
