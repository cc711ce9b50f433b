from django.urls import path

from . import account_views, views

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
    path("a/<str:token>/pay/", views.appointment_pay, name="appointment_pay"),
    path("a/<str:token>/reschedule/", views.appointment_reschedule, name="appointment_reschedule"),
    path("a/<str:token>/paid/", views.appointment_paid, name="appointment_paid"),
    path("account/", account_views.home, name="account"),
    path("account/login/", account_views.login, name="account_login"),
    path("account/login/code/", account_views.login_code, name="account_login_code"),
    path("account/logout/", account_views.logout, name="account_logout"),
    path(
        "account/appointments/<uuid:public_id>/cancel/",
        account_views.appointment_cancel,
        name="account_cancel",
    ),
    path(
        "account/appointments/<uuid:public_id>/reschedule/",
        account_views.appointment_reschedule,
        name="account_reschedule",
    ),
    path(
        "account/invoices/<uuid:public_id>/pay/",
        account_views.invoice_pay,
        name="account_invoice_pay",
    ),
    path(
        "account/invoices/<uuid:public_id>/paid/",
        account_views.invoice_paid,
        name="account_invoice_paid",
    ),
    path(
        "account/invoices/<uuid:public_id>/<slug:kind>.pdf",
        account_views.invoice_document,
        name="account_invoice_document",
    ),
    path(
        "account/payments/<uuid:public_id>/receipt.pdf",
        account_views.payment_receipt,
        name="account_receipt",
    ),
    path("payments/notify/", account_views.payment_notification, name="payment_notification"),
]
