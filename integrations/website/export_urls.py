"""The website CMS's XML export, mounted at ``website/``."""

from django.urls import path

from . import export

app_name = "website-export"

urlpatterns = [path("export.xml", export.website_export, name="export")]
