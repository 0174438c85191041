"""The store: Peewee models both processes share, and the one function that changes a contact's status."""
