"""SES's account-level suppression list, both ways: imported into contacts, our suppressions put on it, reactivated
contacts taken off it."""
