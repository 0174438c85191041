"""The database adapter (store/database.py): the kind of a database, told from its URL before connecting."""

import pytest

from gateway.store.database import is_postgres_url


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
