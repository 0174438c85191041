"""A message's way out: request checks, the guard, composition, the transports and the table of their failures."""
