from django.urls import path

from clinic.core.roles import Workplace

from . import views

app_name = "web"

urlpatterns = [
    path("", views.home, name="home"),
    path("portal/", views.portal, name="portal"),
    *[
        path(f"{code}/", views.workplace, {"code": code}, name=code)
        for code in (Workplace.DESK, Workplace.DOCTOR, Workplace.POS, Workplace.LAB)
    ],
]
