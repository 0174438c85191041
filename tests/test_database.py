"""The database adapter (store/database.py): the kind of a database, told from its URL before connecting; prepared
queries, rendered once per database and run with every parameter named, and only those (a query built without one of
its parameters is refused rather than run with a stale value)."""

import pytest

from gateway.store.database import is_postgres_url, prepared
from gateway.store.models import Contact, database, open_database


@prepared
def _contact_id_of(email):
    return Contact.select(Contact.contact_id).where(Contact.email == email)


@prepared
def _rename(pk, email):
    return Contact.update(email=email).where(Contact.id == pk)


@prepared
def _ignores_status(email, status):
    return Contact.select(Contact.contact_id).where(Contact.email == email)


@pytest.fixture
def two_contacts(database_url):
    open_database(database_url)
    with database.connection_context():
        Contact.insert_many(
            [{"contact_id": "a" * 22, "email": "ada@example.org"}, {"contact_id": "b" * 22, "email": "bob@example.org"}]
        ).execute()
        yield


def test_a_prepared_query_runs_with_the_values_of_each_call(two_contacts):
    assert _contact_id_of(email="ada@example.org").fetchone() == ("a" * 22,)
    assert _contact_id_of(email="bob@example.org").fetchone() == ("b" * 22,)
    assert _contact_id_of(email="eve@example.org").fetchone() is None

    pk = Contact.get(Contact.email == "ada@example.org").id
    assert _rename(pk=pk, email="ada@example.com").rowcount == 1
    assert Contact.get_by_id(pk).email == "ada@example.com"
    assert Contact.get(Contact.email == "bob@example.org").id != pk


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "values, problem",
    [
        ({"email": "ada@example.com"}, "missing: ['pk'], unknown: []"),
        ({"pk": 1, "email": "ada@example.com", "status": "active"}, "missing: [], unknown: ['status']"),
        ({"id": 1, "email": "ada@example.com"}, "missing: ['pk'], unknown: ['id']"),
    ],
)
def test_a_call_that_misses_or_misnames_a_parameter_is_refused_and_changes_nothing(two_contacts, values, problem):
    with pytest.raises(TypeError) as refused:
        _rename(**values)

    assert str(refused.value) == f"_rename() parameters {problem}"
    assert sorted(Contact.select(Contact.email).tuples()) == [("ada@example.org",), ("bob@example.org",)]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_query_built_without_one_of_its_parameters_is_refused(two_contacts):
    with pytest.raises(TypeError) as refused:
        _ignores_status(email="ada@example.org", status="active")

    assert str(refused.value) == "_ignores_status() does not use its parameters ['status']"


@pytest.mark.parametrize(
    "url, postgres",
    [("sqlite:///mailgw.db", False), ("sqlite+pool:///mailgw.db", False), ("postgresql://u@h/db", True)]
    + [("postgres://u@h/db", True), ("postgresql+pool://u@h/db", True)],
)
def test_the_kind_of_a_database_url_is_told_before_connecting(url, postgres):
    assert is_postgres_url(url) is postgres


def test_a_database_url_of_another_kind_is_refused():
    with pytest.raises(ValueError, match="unsupported database URL scheme 'mysql'"):
        is_postgres_url("mysql://u@h/db")
