local client_id = vim.lsp.start_client({
  name = "modelint",
  cmd = { "modelint", "lsp" },
  root_dir = vim.fn.getcwd(),
})
vim.cmd("edit buggy.py")
vim.lsp.buf_attach_client(0, client_id)
local ok = vim.wait(15000, function() return #vim.diagnostic.get(0) > 0 end, 100)
for _, d in ipairs(vim.diagnostic.get(0)) do
  print(string.format("%d:%d %s %s", d.lnum + 1, d.col + 1, d.code or d.user_data and d.user_data.lsp.code or "?", d.message))
end
if not ok then print("no diagnostics") end
vim.cmd("qa!")
