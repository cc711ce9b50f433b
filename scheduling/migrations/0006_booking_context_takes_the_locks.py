"""The booking context function takes the named resources' advisory locks itself.

A booking locked its doctor (and room, devices) in one statement and read its context in the
next: two round trips. The function now takes the locks first, in ascending order as every other
lock of a resource is taken (``scheduling.services.advisory_lock``), and then reads. It is
VOLATILE, so its read takes a fresh snapshot after the locks: it sees everything committed by
the booking or the schedule change that held them.
"""

import importlib

from django.db import migrations

READS_ONLY = importlib.import_module("scheduling.migrations.0005_booking_context_function").CREATE

CREATE = """
CREATE OR REPLACE FUNCTION scheduling_booking_context(
    p_organization bigint, p_channel text, p_resources bigint[], p_start timestamptz,
    p_until timestamptz, p_booked text
) RETURNS TABLE (
    channel_rule integer[], break_owners bigint[], break_starts timestamptz[],
    break_ends timestamptz[], has_active_quotas boolean, plan_version bigint[],
    booked_status jsonb
) LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7301, locked.id::integer)
       FROM (SELECT DISTINCT unnest(p_resources) AS id ORDER BY 1) AS locked;
    RETURN QUERY SELECT
      (SELECT ARRAY[r.min_notice_minutes, r.horizon_days]::integer[]
         FROM scheduling_channelrule r
        WHERE r.organization_id = p_organization AND r.channel = p_channel
        ORDER BY r.id LIMIT 1),
      br.owners, br.starts, br.ends,
      EXISTS (SELECT 1 FROM scheduling_quota q
               WHERE q.organization_id = p_organization AND q.is_active),
      ARRAY[
        (SELECT max(pgh_id) FROM scheduling_workscheduleevent),
        (SELECT max(pgh_id) FROM scheduling_scheduleexceptionevent),
        (SELECT max(pgh_id) FROM scheduling_calendardayevent),
        (SELECT max(pgh_id) FROM scheduling_resourceevent),
        (SELECT max(pgh_id) FROM scheduling_serviceevent),
        (SELECT max(pgh_id) FROM scheduling_servicerequirementevent),
        (SELECT max(pgh_id) FROM core_staffevent),
        (SELECT max(pgh_id) FROM core_branchevent)
      ]::bigint[],
      (SELECT to_jsonb(s) FROM scheduling_appointmentstatus s WHERE s.code = p_booked)
    FROM (
      SELECT array_agg(b.resource_id) AS owners, array_agg(b.starts_at) AS starts,
             array_agg(b.ends_at) AS ends
        FROM scheduling_schedulebreak b
       WHERE b.resource_id = ANY(p_resources)
         AND b.starts_at < p_until AND b.ends_at > p_start
    ) AS br;
END;
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("scheduling", "0005_booking_context_function")]

    operations = [
        # Back: the function of 0005 (reads only, the locks taken before it).
        migrations.RunSQL(CREATE, READS_ONLY)
    ]
