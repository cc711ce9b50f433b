"""The receptionist's and call centre's pages, under /desk/."""

from django.urls import path

from . import print_urls, views

app_name = "desk"

urlpatterns = [
    path("schedule/", views.grid_page, name="grid"),
    path("schedule/grid/", views.grid_fragment, name="grid_fragment"),
    *print_urls.urlpatterns,
]
