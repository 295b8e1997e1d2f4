"""lexner inside other tools (optional extras, imported only when used): :mod:`lexner.integrations.spacy`."""
