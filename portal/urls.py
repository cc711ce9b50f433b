from django.urls import path

from . import views

app_name = "portal"

urlpatterns = [
    path("", views.home, name="home"),
    path("doctors/", views.doctor_list, name="doctors"),
    path("doctors/<uuid:public_id>/", views.doctor_detail, name="doctor"),
    path("services/", views.service_list, name="services"),
    path("book/", views.book, name="book"),
    path("book/hold/", views.book_hold, name="book_hold"),
    path("book/details/", views.book_details, name="book_details"),
    path("book/code/", views.book_code, name="book_code"),
    path("book/done/", views.book_done, name="book_done"),
    path("book/cancel/", views.book_cancel, name="book_cancel"),
    path("a/<str:token>/", views.appointment_link, name="appointment"),
]
