from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("staging", "0005_option"),
    ]

    operations = [
        migrations.AddField(
            model_name="schema",
            name="extends",
            field=models.CharField(blank=True, db_index=True, max_length=130,
                                   help_text="For an extension schema: the schema it extends (extendedSchema)."),
        ),
        migrations.AddField(
            model_name="schema",
            name="description_digest",
            field=models.CharField(blank=True, editable=False, max_length=64),
        ),
    ]
