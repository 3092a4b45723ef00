"""Pure domain: entities, rules and errors. Imports only the standard library."""
