"""The booking context as a PL/pgSQL function, so its plan is prepared once per connection.

A booking reads its context (channel rule, the doctor's breaks, whether quotas are active, the
version of the cached working-time plans, the 'booked' status) in one statement. Planned from
scratch on every booking, that statement costs more server time than running it; PL/pgSQL keeps
the plans of the queries in a function for the life of the connection. The version tables are
the history event tables of ``scheduling.plan_cache.PLAN_SOURCES``, in its order (a test checks
that the two agree).
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION scheduling_booking_context(
    p_organization bigint, p_channel text, p_resources bigint[], p_start timestamptz,
    p_until timestamptz, p_booked text
) RETURNS TABLE (
    channel_rule integer[], break_owners bigint[], break_starts timestamptz[],
    break_ends timestamptz[], has_active_quotas boolean, plan_version bigint[],
    booked_status jsonb
) LANGUAGE plpgsql STABLE AS $$
BEGIN
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

DROP = """
DROP FUNCTION IF EXISTS scheduling_booking_context(
    bigint, text, bigint[], timestamptz, timestamptz, text
);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0005_event_foreign_keys_unindexed"),
        ("scheduling", "0004_write_lean_indexes"),
    ]

    operations = [migrations.RunSQL(CREATE, DROP)]
