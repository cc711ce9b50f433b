from django.urls import path

from clinic.core.roles import Workplace

from . import views

app_name = "web"

urlpatterns = [
    path("", views.home, name="home"),
    *[
        path(f"{code}/", views.workplace, {"code": code}, name=code)
        # The cash desk's own page is billing's POS at /pos/ (billing.pos_urls).
        for code in (Workplace.DESK, Workplace.DOCTOR, Workplace.LAB)
    ],
]
