"""Options in the admin: what GetOption answers is edited here, checked against the option's type."""

import pytest
from django.urls import reverse

from staging.options import DataType, Option
from tests.conftest import BOTH_DATABASES

pytestmark = pytest.mark.django_db(databases=BOTH_DATABASES)

ADD = reverse("admin:staging_option_add")


@pytest.fixture
def superuser_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("admin", "admin@example.com", "pw"))
    return client


def form(**values) -> dict:
    return {"name": "", "data_type": DataType.STRING.value, "description": "", "string_value": "", "long_value": "",
            "double_value": "", "timestamp_value_0": "", "timestamp_value_1": "", "memo_value": "", **values}


def test_an_option_added_in_the_admin_is_what_get_option_reads(superuser_client):
    response = superuser_client.post(ADD, form(name="NmsMyOption", data_type=DataType.LONG.value, long_value="12"))

    assert response.status_code == 302, response.content.decode()
    option = Option.objects.get(name="NmsMyOption")
    assert (option.raw_value, option.data_type) == ("12", DataType.LONG)
    changelist = superuser_client.get(reverse("admin:staging_option_changelist")).content.decode()
    assert "NmsMyOption" in changelist and ">12<" in changelist


def test_a_long_option_without_its_value_is_refused_next_to_the_field(superuser_client):
    response = superuser_client.post(ADD, form(name="Half", data_type=DataType.LONG.value, string_value="12"))

    assert response.status_code == 200
    assert "keeps its value in" in response.content.decode()
    assert not Option.objects.filter(name="Half").exists()


def test_editing_options_needs_the_change_permission(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("staff", password="pw", is_staff=True))

    assert client.post(ADD, form(name="Sneaky", string_value="x")).status_code == 403
    assert not Option.objects.filter(name="Sneaky").exists()
