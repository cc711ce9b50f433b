"""The cashier's desk (POS), mounted at /pos/."""

from django.urls import path

from . import pos_views

app_name = "pos"

urlpatterns = [
    path("", pos_views.pos_page, name="page"),
    path("receipts/", pos_views.receipts_fragment, name="receipts"),
    path("receipts/<uuid:public_id>/retry/", pos_views.receipt_retry_view, name="receipt_retry"),
    path("shift/open/", pos_views.shift_open_view, name="shift_open"),
    path("shift/close/", pos_views.shift_close_view, name="shift_close"),
    path("shift/x-report/", pos_views.shift_report_x_view, name="shift_report_x"),
    path("shift/cash/", pos_views.cash_move_view, name="cash_move"),
    path("invoice/", pos_views.invoice_visits_view, name="invoice_visits"),
    path("pay/", pos_views.pay_view, name="pay"),
    path("discount/", pos_views.discount_view, name="discount"),
    path("refund/", pos_views.refund_view, name="refund"),
]
