from django.db import migrations, models


def name_word(position):
    """Word ``position`` of name_key in binary order, spelt as patients.search.name_word."""
    return models.Func(
        models.F("name_key"),
        output_field=models.CharField(),
        template=f"split_part(%(expressions)s COLLATE \"C\", ' ', {position})",
    )


class Migration(migrations.Migration):
    """Indexes of the search box: the words of name_key (surname, first name, patronymic).

    The search matches typed words to name words: equal or prefix ranges on the leading words,
    typo corrections as ``= ANY`` probes, pages in name order. Binary order ("C") because the
    database collation (C.UTF-8 under libc) does not give b-tree prefix ranges. The second index
    serves words typed without the surname ("Иван Петрович"). Not partial (tombstones are few):
    the planner takes statistics of indexed expressions only from indexes without a predicate.
    """

    dependencies = [("patients", "0002_standard_card_types")]

    operations = [
        migrations.AddIndex(
            model_name="person",
            index=models.Index(
                name_word(1),
                name_word(2),
                name_word(3),
                name="patients_person_name_words",
            ),
        ),
        migrations.AddIndex(
            model_name="person",
            index=models.Index(
                name_word(2),
                name_word(3),
                name="patients_person_first_names",
            ),
        ),
        # The planner knows how selective a word is only from statistics of the indexed
        # expressions, which ANALYZE gathers once the indexes exist.
        migrations.RunSQL("ANALYZE patients_person", reverse_sql=migrations.RunSQL.noop),
    ]
