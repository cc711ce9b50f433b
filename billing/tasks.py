"""Beat-driven billing work: reading back online payments whose outcome never reached us.

A gateway notifies the clinic of every payment's end, and the patient's return to the site
settles it too; a notification can still be lost, and a patient who leaves the payment page
never returns. Every ten minutes the payments pending for a while are asked about
(``billing.online.online_payments_recheck``).
"""

from __future__ import annotations

from celery import shared_task

from .online import online_payments_recheck


@shared_task(name="billing.online_payments_recheck", ignore_result=True)
def recheck_online_payments() -> int:
    return online_payments_recheck()
