"""modelint as a Language Server (`modelint lsp`)."""
