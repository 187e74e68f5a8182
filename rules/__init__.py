"""modelint's rules, one module per rule (installed as `modelint.rules`)."""
