"""Operating the gateway: the suppression list as operators read and change it (the admin service and CLI)."""
