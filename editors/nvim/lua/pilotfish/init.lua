-- Pilotfish for Neovim: starts the `pilotfish` language server beside your usual ones,
-- shows its suggestions (ghost text on 0.12+, the completion menu before) and binds the
-- code actions (explain, refactor, security review, your own [actions.*]).
--
--   require("pilotfish").setup{}                     -- defaults below
--   require("pilotfish").setup{ settings = { completion = { budget_ms = 150 } } }
--
-- `settings` has the shape of `.pilotfish.toml`, as a Lua table; it goes to the server as
-- `initializationOptions` and overrides the file key by key.

local M = {}

local NAME = "pilotfish"

--- @class pilotfish.Keymaps
--- @field accept string|false     insert mode: accept the ghost text (0.12+ inline mode); falls back to the key itself
--- @field next string|false       insert mode: next inline candidate (0.12+)
--- @field trigger string|false    insert mode: open the completion menu (menu mode)
--- @field explain string|false    normal/visual: Pilotfish: Explain
--- @field refactor string|false   normal/visual: Pilotfish: Refactor
--- @field review string|false     normal/visual: Pilotfish: Security review
--- @field actions string|false    normal/visual: code-action menu with only Pilotfish's actions

M.defaults = {
  cmd = { "pilotfish" },
  filetypes = {
    "rust", "python", "javascript", "javascriptreact", "typescript", "typescriptreact",
    "go", "c", "cpp", "java", "ruby", "php", "lua", "sh", "bash",
  },
  root_markers = { ".pilotfish.toml", ".git" },
  --- Same shape as .pilotfish.toml; sent as initializationOptions (not sent when empty).
  settings = {},
  --- "auto": ghost text where Neovim has vim.lsp.inline_completion (0.12+), else the menu.
  --- "inline" | "menu" | false (no completion from Pilotfish; actions only).
  completion = "auto",
  --- Menu mode only: open the menu by itself. Pilotfish advertises no trigger characters,
  --- so with Neovim's own autotrigger this would never fire; instead the plugin asks after
  --- `autotrigger_ms` of pause in insert mode. Off by default: a model call per pause is
  --- costly on a CPU, and a menu popping up while typing is intrusive. Use `trigger`.
  autotrigger = false,
  autotrigger_ms = 300,
  --- @type pilotfish.Keymaps|false
  keymaps = {
    accept = "<Tab>",
    next = "<M-]>",
    trigger = "<C-l>",
    explain = "<leader>pe",
    refactor = "<leader>pr",
    review = "<leader>ps",
    actions = "<leader>pa",
  },
  --- Echo `$/progress` of running actions ("asking qwen…", "answered by …").
  progress = true,
  --- Tell the server where the cursor rests in normal mode, this long after it stops: an
  --- automatic code-action request at the cursor (what VS Code sends for its light bulb at
  --- every cursor move). When that is another function, the server reads its prompt into a
  --- local model server's cache, so that the first suggestion there after you start typing
  --- does not wait for it. false: never.
  cursor_rest_ms = 200,
}

M.config = vim.deepcopy(M.defaults)

local COMMANDS = {
  explain = "pilotfish.explain",
  refactor = "pilotfish.refactor",
  review = "pilotfish.review",
}

local function has_inline()
  return vim.lsp.inline_completion ~= nil and vim.lsp.inline_completion.enable ~= nil
end

--- "inline", "menu" or nil, for this Neovim and config.
function M.completion_mode()
  local c = M.config.completion
  if c == false then
    return nil
  elseif c == "inline" then
    return has_inline() and "inline" or "menu"
  elseif c == "menu" then
    return "menu"
  end
  return has_inline() and "inline" or "menu"
end

local function command_of(action)
  local c = action.command
  if type(c) == "table" then
    return c.command
  end
  return c
end

--- Runs the code-action request, keeping only Pilotfish's entries; `which` = "explain",
--- "refactor", "review" (applied at once) or nil (the menu of all of them).
--- `range` ({start={row,col}, ["end"]={row,col}}, 1-based rows) overrides the cursor or
--- visual selection.
function M.action(which, range)
  local wanted = which and COMMANDS[which]
  vim.lsp.buf.code_action({
    range = range,
    filter = function(a)
      local c = command_of(a)
      if type(c) ~= "string" then
        return false
      end
      if wanted then
        return c == wanted
      end
      return c:match("^pilotfish%.") ~= nil and c ~= "pilotfish.accept"
    end,
    apply = wanted ~= nil,
  })
end

function M.explain() M.action("explain") end
function M.refactor() M.action("refactor") end
function M.review() M.action("review") end
function M.actions() M.action(nil) end

--- `client`'s request: a method from 0.11 on, a function before.
local function request(client, method, params, handler, bufnr)
  if vim.fn.has("nvim-0.11") == 1 then
    client:request(method, params, handler, bufnr)
  else
    client.request(method, params, handler, bufnr)
  end
end

--- The first pilotfish client attached to `bufnr` (default: current buffer).
function M.client(bufnr)
  local get = vim.lsp.get_clients or vim.lsp.get_active_clients
  return get({ name = NAME, bufnr = bufnr or 0 })[1]
end

local function value(x)
  if x == vim.NIL then
    return nil
  end
  return x
end

--- The `pilotfish.stats` report (what `pilotfish stats --json` prints) as lines of text:
--- per model, the total, and what routing saved.
function M.stats_lines(report)
  local function pct(r)
    r = value(r)
    return r and string.format("%.0f%%", r * 100) or "-"
  end
  local function ms(v)
    v = value(v)
    return v and string.format("%d ms", v) or "-"
  end
  local since = value(report.since)
  local lines = {
    string.format("Pilotfish usage%s: %d lines", since and (" since " .. since:sub(1, 16)) or "",
      value(report.lines) or 0),
    "",
    string.format("%-22s %6s %6s %6s %8s %8s %6s %6s %7s %10s", "model", "reqs", "calls", "cache",
      "p50", "p95", "shown", "acc%", "chkfail", "cost $"),
  }
  local rows = vim.list_extend(vim.deepcopy(value(report.by_model) or {}), { value(report.total) or {} })
  for _, r in ipairs(rows) do
    lines[#lines + 1] = string.format("%-22s %6d %6d %6s %8s %8s %6d %6s %7s %10.4f",
      tostring(value(r.key) or "?"):sub(1, 22), value(r.requests) or 0, value(r.model_calls) or 0,
      pct(r.cache_hit_rate), ms(r.p50_ms), ms(r.p95_ms), value(r.shown) or 0, pct(r.acceptance_rate),
      pct(r.check_failure_rate), value(r.cost_usd) or 0)
  end
  local saving = value(report.saving) or {}
  local priciest = value(saving.priciest_model)
  lines[#lines + 1] = ""
  if priciest then
    local ratio = value(saving.ratio)
    lines[#lines + 1] = string.format("Routing saved $%.4f%s: $%.4f spent; every call on %s would have cost $%.4f",
      value(saving.saved_usd) or 0, ratio and string.format(" (%.1f× cheaper)", ratio) or "",
      value(saving.cost_usd) or 0, priciest, value(saving.all_on_priciest_usd) or 0)
  else
    lines[#lines + 1] = string.format("$%.4f spent; no configured model has a price", value(saving.cost_usd) or 0)
  end
  return lines
end

--- `:Pilotfish stats [SPAN]`: the usage summary (default: the last day) in a scratch window.
function M.stats(since)
  local client = M.client() or (vim.lsp.get_clients or vim.lsp.get_active_clients)({ name = NAME })[1]
  if not client then
    vim.notify("Pilotfish: the language server is not running", vim.log.levels.WARN)
    return
  end
  local params = { command = "pilotfish.stats", arguments = { { since = since or "1d" } } }
  local function show(err, result)
    if err then
      vim.notify("Pilotfish: stats failed: " .. (err.message or vim.inspect(err)), vim.log.levels.ERROR)
      return
    end
    vim.cmd("new")
    local buf = vim.api.nvim_get_current_buf()
    vim.bo[buf].buftype = "nofile"
    vim.bo[buf].bufhidden = "wipe"
    vim.bo[buf].swapfile = false
    pcall(vim.api.nvim_buf_set_name, buf, "pilotfish://stats")
    vim.api.nvim_buf_set_lines(buf, 0, -1, false, M.stats_lines(result or {}))
    vim.bo[buf].modifiable = false
  end
  request(client, "workspace/executeCommand", params, show)
end

local function map(mode, lhs, rhs, bufnr, desc, opts)
  if not lhs or lhs == "" then
    return
  end
  local o = vim.tbl_extend("force", { buffer = bufnr, silent = true, desc = desc }, opts or {})
  vim.keymap.set(mode, lhs, rhs, o)
end

local menu_timers = {}
local rest_timers = {}

--- Runs `fn` once `ms` have passed without another call for `bufnr` (one timer per buffer in
--- `timers`).
local function debounce(timers, bufnr, ms, fn)
  local t = timers[bufnr]
  if t then
    t:stop()
  else
    t = vim.uv.new_timer()
    timers[bufnr] = t
  end
  t:start(ms, 0, vim.schedule_wrap(fn))
end

--- The buffer lines `text` (a suggestion) makes. Neovim keeps a buffer's lines without their
--- line breaks (a "dos" buffer gets \r\n back when written) but sends the server its text
--- with them, and Pilotfish's suggestions carry the document's line breaks, as text edits do
--- (Helix inserts them as they are). Split at \n alone, every line of a dos buffer's
--- suggestion but the last would keep a \r: shown as ^M, written as \r\r\n.
function M.buffer_lines(text)
  return vim.split(text, "\r?\n")
end

--- After the menu inserted `word` (the head of a Pilotfish item) at the cursor, insert the
--- rest of the item's text.
function M.finish_completion(bufnr, word, item)
  if item.insertTextFormat == 2 then
    return -- snippets are expanded whole by Neovim
  end
  local text = vim.tbl_get(item, "textEdit", "newText") or item.insertText or item.label
  if type(text) ~= "string" or text == word or text:sub(1, #word) ~= word then
    return
  end
  local row, col = unpack(vim.api.nvim_win_get_cursor(0))
  local line = vim.api.nvim_buf_get_lines(bufnr, row - 1, row, false)[1] or ""
  if line:sub(col - #word + 1, col) ~= word then
    return
  end
  -- Pilotfish's range ends at the cursor (it replaces only the word before it), so the
  -- rest goes right at the cursor.
  local rest = M.buffer_lines(text:sub(#word + 1))
  vim.api.nvim_buf_set_text(bufnr, row - 1, col, row - 1, col, rest)
  local last_row = row - 1 + #rest - 1
  local last_col = (#rest == 1 and col or 0) + #rest[#rest]
  vim.api.nvim_win_set_cursor(0, { last_row + 1, last_col })
end

local function setup_menu(client, bufnr, keys)
  if not vim.lsp.completion or not vim.lsp.completion.enable then
    return -- before 0.11: omnifunc (<C-x><C-o>) still works through vim.lsp.omnifunc
  end
  vim.lsp.completion.enable(true, client.id, bufnr, { autotrigger = false })
  -- vim.lsp.completion inserts a plain-text item's `word`, which it cuts at the first
  -- whitespace ("a + b" → "a"); only snippets get their whole text. Complete the rest.
  vim.api.nvim_create_autocmd("CompleteDone", {
    group = vim.api.nvim_create_augroup("pilotfish.complete_done." .. bufnr, { clear = true }),
    buffer = bufnr,
    callback = function()
      local done = vim.v.completed_item
      local lsp_data = vim.tbl_get(done or {}, "user_data", "nvim", "lsp")
      if not lsp_data or lsp_data.client_id ~= client.id then
        return
      end
      M.finish_completion(bufnr, done.word or "", lsp_data.completion_item or {})
    end,
  })
  if keys then
    map("i", keys.trigger, function() vim.lsp.completion.get() end, bufnr,
      "Pilotfish: completion menu")
  end
  if M.config.autotrigger then
    local group = vim.api.nvim_create_augroup("pilotfish.autotrigger." .. bufnr, { clear = true })
    vim.api.nvim_create_autocmd("TextChangedI", {
      group = group,
      buffer = bufnr,
      callback = function()
        debounce(menu_timers, bufnr, M.config.autotrigger_ms, function()
          if vim.api.nvim_get_current_buf() == bufnr and vim.fn.mode() == "i"
            and vim.fn.pumvisible() == 0 then
            vim.lsp.completion.get()
          end
        end)
      end,
    })
  end
end

--- The automatic code-action request at the cursor that tells the server where it rests;
--- the answer (Pilotfish's actions there) is not wanted.
local function report_cursor(client, bufnr)
  local params = vim.lsp.util.make_range_params(0, client.offset_encoding)
  params.context = { diagnostics = {}, triggerKind = 2 } -- CodeActionTriggerKind.Automatic
  request(client, "textDocument/codeAction", params, function() end, bufnr)
end

local function setup_cursor_rest(client, bufnr)
  local wait = M.config.cursor_rest_ms
  if not wait then
    return
  end
  vim.api.nvim_create_autocmd({ "CursorMoved", "BufEnter" }, {
    group = vim.api.nvim_create_augroup("pilotfish.cursor_rest." .. bufnr, { clear = true }),
    buffer = bufnr,
    callback = function()
      debounce(rest_timers, bufnr, wait, function()
        if vim.api.nvim_get_current_buf() == bufnr and vim.fn.mode() == "n"
          and not client:is_stopped() then
          report_cursor(client, bufnr)
        end
      end)
    end,
  })
  vim.api.nvim_create_autocmd("BufDelete", {
    group = vim.api.nvim_create_augroup("pilotfish.cursor_rest_end." .. bufnr, { clear = true }),
    buffer = bufnr,
    callback = function()
      local t = rest_timers[bufnr]
      if t then
        t:stop()
        t:close()
        rest_timers[bufnr] = nil
      end
    end,
  })
end

local lf_clients = setmetatable({}, { __mode = "k" })

--- Has `client`'s inline completion items reach Neovim with \n line breaks: its ghost text
--- and its accept split an item's text at \n alone (`M.buffer_lines` says why that is
--- wrong in a dos buffer), and it asks through `client:request` with a handler of its own.
function M.inline_items_with_lf(client)
  if lf_clients[client] then
    return
  end
  lf_clients[client] = true
  local request = client.request
  client.request = function(self, method, params, handler, ...)
    if method == "textDocument/inlineCompletion" and handler then
      local inner = handler
      handler = function(err, result, ...)
        local items = type(result) == "table" and (result.items or result) or {}
        for _, item in ipairs(items) do
          if type(item.insertText) == "string" then
            item.insertText = table.concat(M.buffer_lines(item.insertText), "\n")
          end
        end
        return inner(err, result, ...)
      end
    end
    return request(self, method, params, handler, ...)
  end
end

local function setup_inline(client, bufnr, keys)
  M.inline_items_with_lf(client)
  vim.lsp.inline_completion.enable(true, { bufnr = bufnr, client_id = client.id })
  if keys then
    map("i", keys.accept, function()
      if not vim.lsp.inline_completion.get() then
        return keys.accept
      end
    end, bufnr, "Pilotfish: accept the suggestion", { expr = true, replace_keycodes = true })
    map("i", keys.next, function() vim.lsp.inline_completion.select({ count = 1 }) end, bufnr,
      "Pilotfish: next suggestion")
  end
end

local function on_attach(client, bufnr)
  local keys = M.config.keymaps
  if keys == false then
    keys = nil
  end
  local mode = M.completion_mode()
  if mode == "inline" then
    setup_inline(client, bufnr, keys)
  elseif mode == "menu" then
    setup_menu(client, bufnr, keys)
  end
  if mode then
    setup_cursor_rest(client, bufnr)
  end
  if keys then
    local nx = { "n", "x" }
    map(nx, keys.explain, M.explain, bufnr, "Pilotfish: Explain")
    map(nx, keys.refactor, M.refactor, bufnr, "Pilotfish: Refactor")
    map(nx, keys.review, M.review, bufnr, "Pilotfish: Security review")
    map(nx, keys.actions, M.actions, bufnr, "Pilotfish: actions")
  end
end

--- `settings` as initializationOptions: nil (not sent) when empty, since an empty Lua table
--- encodes as the JSON array `[]`, which the server rejects ("expected an object").
local function init_options(settings)
  if type(settings) ~= "table" or next(settings) == nil then
    return nil
  end
  return settings
end

local function lsp_config()
  return {
    name = NAME,
    cmd = M.config.cmd,
    filetypes = M.config.filetypes,
    root_markers = M.config.root_markers,
    init_options = init_options(M.config.settings),
  }
end

local function find_root(bufnr)
  local path = vim.api.nvim_buf_get_name(bufnr)
  if vim.fs.root then
    return vim.fs.root(bufnr, M.config.root_markers) or vim.fs.dirname(path)
  end
  local found = vim.fs.find(M.config.root_markers, { upward = true, path = vim.fs.dirname(path) })[1]
  return found and vim.fs.dirname(found) or vim.fs.dirname(path)
end

--- Merge `opts` into the config. Keymap tables merge key by key (set one to false to
--- drop it); `keymaps = false` drops them all. Calling setup again replaces the config.
function M.setup(opts)
  opts = opts or {}
  local cfg = vim.deepcopy(M.defaults)
  for k, v in pairs(opts) do
    if k == "keymaps" and type(v) == "table" then
      cfg.keymaps = vim.tbl_extend("force", cfg.keymaps, v)
    else
      cfg[k] = v
    end
  end
  M.config = cfg

  local group = vim.api.nvim_create_augroup("pilotfish", { clear = true })
  vim.api.nvim_create_autocmd("LspAttach", {
    group = group,
    callback = function(ev)
      local client = vim.lsp.get_client_by_id(ev.data.client_id)
      if client and client.name == NAME then
        on_attach(client, ev.buf)
      end
    end,
  })
  if cfg.progress and vim.fn.exists("##LspProgress") == 1 then
    vim.api.nvim_create_autocmd("LspProgress", {
      group = group,
      callback = function(ev)
        local client = vim.lsp.get_client_by_id(ev.data.client_id)
        local value = ev.data.params and ev.data.params.value
        if not client or client.name ~= NAME or type(value) ~= "table" then
          return
        end
        local text = table.concat(vim.tbl_filter(function(s) return s ~= nil and s ~= "" end,
          { value.title, value.message }), ": ")
        if text ~= "" then
          vim.api.nvim_echo({ { "Pilotfish " .. text } }, false, {})
        end
      end,
    })
  end

  if vim.lsp.config and vim.lsp.enable then
    -- 0.11+: the built-in client manager starts one server per root on these filetypes.
    vim.lsp.config(NAME, lsp_config())
    vim.lsp.enable(NAME)
  else
    -- Before 0.11: start (or reuse) the client on FileType.
    vim.api.nvim_create_autocmd("FileType", {
      group = group,
      pattern = cfg.filetypes,
      callback = function(ev)
        if vim.bo[ev.buf].buftype ~= "" then
          return
        end
        local c = lsp_config()
        c.root_dir = find_root(ev.buf)
        vim.lsp.start(c, { bufnr = ev.buf })
      end,
    })
    -- Buffers already open when setup{} runs.
    for _, buf in ipairs(vim.api.nvim_list_bufs()) do
      if vim.api.nvim_buf_is_loaded(buf) and vim.tbl_contains(cfg.filetypes, vim.bo[buf].filetype) then
        vim.api.nvim_exec_autocmds("FileType", { group = group, buffer = buf })
      end
    end
  end

  pcall(vim.api.nvim_del_user_command, "Pilotfish")
  vim.api.nvim_create_user_command("Pilotfish", function(o)
    local sub = o.fargs[1] or "actions"
    if sub == "check" then
      vim.cmd("checkhealth pilotfish")
    elseif sub == "stats" then
      M.stats(o.fargs[2])
    elseif COMMANDS[sub] or sub == "actions" then
      local range
      if o.range > 0 then
        local last = vim.api.nvim_buf_get_lines(0, o.line2 - 1, o.line2, false)[1] or ""
        range = { start = { o.line1, 0 }, ["end"] = { o.line2, #last } }
      end
      M.action(COMMANDS[sub] and sub or nil, range)
    else
      vim.notify("Pilotfish: unknown subcommand " .. sub, vim.log.levels.ERROR)
    end
  end, {
    nargs = "*",
    range = true,
    complete = function() return { "explain", "refactor", "review", "actions", "check", "stats" } end,
    desc = "Pilotfish: explain | refactor | review | actions | check | stats [SPAN]",
  })
end

return M
