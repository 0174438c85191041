"""The composition roots: each builds one process's parts (servers, dispatcher, background loops) and runs them."""
