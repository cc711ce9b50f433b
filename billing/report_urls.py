"""The financial reports' pages and exports (included under /billing/reports/)."""

from django.urls import path

from . import report_views

app_name = "billing_reports"

urlpatterns = [
    path("revenue/", report_views.revenue_page, name="revenue"),
    path("revenue.csv", report_views.revenue_export_csv, name="revenue_csv"),
    path("revenue.xlsx", report_views.revenue_export_xlsx, name="revenue_xlsx"),
]
