-- Headless Neovim test of the Pilotfish plugin against the real `pilotfish` binary and the
-- Ollama double (model_double.py). Run by run.sh, which sets:
--   PILOTFISH_BIN          the pilotfish binary
--   PILOTFISH_PLUGIN_DIR   editors/nvim (put on runtimepath)
--   PILOTFISH_DOUBLE_URL   http://127.0.0.1:PORT of the double
--   PILOTFISH_WORKSPACE    a scratch workspace holding add.py
--   PILOTFISH_DOUBLE_DELAY_MS  how long the double takes to answer a completion: longer than
--                          the default 100 ms budget, so what the editor shows is a late answer
-- Prints one line per check, then "N passed, N failed" as the last line; exits 1 on failure.

local env = vim.env
local passed, failed = 0, 0
-- Results go to $PILOTFISH_TEST_OUT (run.sh prints it) so that Neovim's own messages on
-- the terminal do not mix into them; stdout when unset.
local out_file = env.PILOTFISH_TEST_OUT and io.open(env.PILOTFISH_TEST_OUT, "w") or io.stdout
local function out(s)
  out_file:write(s .. "\n")
  out_file:flush()
end
local function check(name, cond, detail)
  if cond then
    passed = passed + 1
    out("ok   " .. name)
  else
    failed = failed + 1
    out("FAIL " .. name .. (detail and (": " .. detail) or ""))
  end
  return cond
end
local function finish()
  out(string.format("%d passed, %d failed", passed, failed))
  if out_file ~= io.stdout then
    out_file:close()
  end
  vim.cmd((failed > 0 or passed == 0) and "cquit 1" or "qall!")
end
local function inspect1(x)
  return (vim.inspect(x):gsub("%s+", " ")):sub(1, 600)
end

local ok, err = xpcall(function()
  vim.opt.runtimepath:prepend(env.PILOTFISH_PLUGIN_DIR)
  vim.cmd("filetype on")
  local v = vim.version()
  out(string.format("Neovim %d.%d.%d, pilotfish %s, double %s", v.major, v.minor, v.patch,
    env.PILOTFISH_BIN, env.PILOTFISH_DOUBLE_URL))

  local pilotfish = require("pilotfish")

  -- 0. setup{} with no settings, as a new user writes it: initializationOptions must be an
  -- object or absent. An empty Lua table encodes as the JSON array `[]`, and the server then
  -- warned "ignoring editor settings … expected an object, got []" on every start.
  local messages = {}
  local show_message = vim.lsp.handlers["window/showMessage"]
  vim.lsp.handlers["window/showMessage"] = function(_, result)
    messages[#messages + 1] = result and result.message or ""
  end
  pilotfish.setup({ cmd = { env.PILOTFISH_BIN }, progress = false })
  vim.cmd.edit(vim.fn.fnameescape(env.PILOTFISH_WORKSPACE .. "/empty.py"))
  local buf0 = vim.api.nvim_get_current_buf()
  local client0
  local up = vim.wait(15000, function()
    client0 = pilotfish.client(buf0)
    return client0 ~= nil and client0.initialized == true
  end, 50)
  if check("setup{} without settings: the client starts", up) then
    -- A round trip after `initialized`, so that whatever the server said before is handled.
    local rp = vim.lsp.util.make_range_params(0, client0.offset_encoding)
    rp.context = { diagnostics = {} }
    vim.lsp.buf_request_sync(buf0, "textDocument/codeAction", rp, 15000)
    local opts = client0.config.init_options
    local encoded = opts == nil and "(not sent)" or vim.json.encode(opts)
    check("setup{} without settings sends no initializationOptions array", encoded ~= "[]", encoded)
    local warned = vim.tbl_filter(function(m)
      return m:find("editor settings", 1, true) ~= nil
    end, messages)
    check("the server takes setup{}'s settings without a warning", #warned == 0,
      table.concat(warned, " | "))
    client0:stop(true)
    vim.wait(5000, function() return client0:is_stopped() end, 50)
  end
  vim.lsp.handlers["window/showMessage"] = show_message
  vim.cmd("bwipeout! " .. buf0)

  local settings = {
    models = {
      double = { provider = "ollama", url = env.PILOTFISH_DOUBLE_URL, model = "double", fim = "native" },
    },
    routes = { complete = { "double" }, explain = { "double" }, refactor = { "double" }, review = { "double" } },
    -- No [completion] override: the default budget (100 ms), shorter than the double's delay.
  }
  local delay_ms = tonumber(env.PILOTFISH_DOUBLE_DELAY_MS or "0") or 0
  pilotfish.setup({ cmd = { env.PILOTFISH_BIN }, settings = settings, progress = false })

  local file = env.PILOTFISH_WORKSPACE .. "/add.py"
  vim.cmd.edit(vim.fn.fnameescape(file))
  local buf = vim.api.nvim_get_current_buf()
  check("filetype is python", vim.bo[buf].filetype == "python", vim.bo[buf].filetype)

  local client
  local attached = vim.wait(15000, function()
    client = pilotfish.client(buf)
    return client ~= nil and client.initialized == true
  end, 50)
  if not check("pilotfish client starts and attaches (vim.lsp.config/enable)", attached) then
    return
  end
  local info = client.server_info or {}
  out("     server: " .. tostring(info.name) .. " " .. tostring(info.version)
    .. ", position encoding " .. tostring(client.offset_encoding))
  check("initializationOptions carry setup{ settings }",
    vim.deep_equal(client.config.init_options, settings))

  local mode = pilotfish.completion_mode()
  local want_mode = vim.lsp.inline_completion and "inline" or "menu"
  check("completion mode is " .. want_mode, mode == want_mode, tostring(mode))
  local leader = "\\"
  for _, k in ipairs({ "pe", "pr", "ps", "pa" }) do
    local m = vim.fn.maparg(leader .. k, "n", false, true)
    check("keymap <leader>" .. k .. " is set on the buffer", m.buffer == 1 and m.callback ~= nil,
      inspect1(m))
  end
  local trig = mode == "inline" and "<Tab>" or "<C-L>"
  local im = vim.fn.maparg(trig, "i", false, true)
  check("insert keymap " .. trig .. " is set", im.buffer == 1, inspect1(im))

  -- Line 2 is "    return " (0-based line 1); the cursor after it.
  vim.api.nvim_win_set_cursor(0, { 2, 11 })
  local function pos_params()
    local p = vim.lsp.util.make_position_params(0, client.offset_encoding)
    return p
  end

  -- 1. Completion: the double's suggestion as a menu item.
  local params = pos_params()
  params.context = { triggerKind = 1 }
  local resp = vim.lsp.buf_request_sync(buf, "textDocument/completion", params, 15000) or {}
  local r = resp[client.id]
  local items = r and r.result and (r.result.items or r.result) or {}
  local found
  for _, item in ipairs(items) do
    local text = (item.textEdit and item.textEdit.newText) or item.insertText or item.label
    if type(text) == "string" and text:find("a + b", 1, true) then
      found = item
    end
  end
  check("textDocument/completion has the double's suggestion \"a + b\"", found ~= nil,
    r and r.err and inspect1(r.err) or inspect1(items))

  -- 1b. What the user sees on this version, through the plugin's own keymaps, in insert
  -- mode: feedkeys with "x!" stays in insert mode while a timer polls and then leaves.
  local original = vim.api.nvim_buf_get_lines(buf, 0, -1, false)
  local function in_insert(keys, poll, timeout_ms)
    local t0, result, detail = vim.uv.now(), false, nil
    local function tick()
      if vim.fn.mode() ~= "i" then
        return
      end
      local done
      done, detail = poll()
      if done or vim.uv.now() - t0 > timeout_ms then
        result = done
        vim.api.nvim_feedkeys(vim.api.nvim_replace_termcodes("<Esc>", true, false, true), "n", false)
        return
      end
      vim.defer_fn(tick, 100)
    end
    vim.defer_fn(tick, 100)
    vim.api.nvim_feedkeys(vim.api.nvim_replace_termcodes(keys, true, false, true), "mx!", false)
    return result, detail
  end
  -- How long after the keys the suggestion showed, and whether that is past the budget.
  local shown_after
  local function late(what)
    return string.format("%s %d ms after the keys (double: %d ms, budget: 100 ms)", what,
      shown_after or -1, delay_ms)
  end
  if mode == "menu" then
    vim.o.completeopt = "menuone,noselect"
    local state, words = "waiting", nil
    local t0 = vim.uv.now()
    in_insert("A<C-l>", function()
      if state == "waiting" then
        words = {}
        for _, i in ipairs(vim.fn.complete_info({ "items" }).items or {}) do
          local ci = vim.tbl_get(i, "user_data", "nvim", "lsp", "completion_item") or {}
          local text = vim.tbl_get(ci, "textEdit", "newText") or ci.insertText or i.abbr or i.word
          words[#words + 1] = text
        end
        if vim.tbl_contains(words, "a + b") then
          state = "shown"
          shown_after = vim.uv.now() - t0
          vim.api.nvim_feedkeys(vim.api.nvim_replace_termcodes("<C-n><C-y>", true, false, true), "n", false)
        end
        return false
      end
      state = "accepted"
      return vim.api.nvim_buf_get_lines(buf, 1, 2, false)[1] == "    return a + b"
    end, 15000)
    check("<C-l> opens the vim.lsp.completion menu with \"a + b\" (" .. late("shown") .. ")",
      state ~= "waiting", inspect1(words))
    check("the menu shows a late answer: the first <C-l> waits past the budget",
      state ~= "waiting" and shown_after >= delay_ms, late("shown"))
    local line = vim.api.nvim_buf_get_lines(buf, 1, 2, false)[1]
    check("<C-n><C-y> inserts it", line == "    return a + b", line)
  else
    local ghost, state = nil, "waiting"
    local t0 = vim.uv.now()
    in_insert("A", function()
      if state == "waiting" then
        local text = ""
        for _, m in ipairs(vim.api.nvim_buf_get_extmarks(buf, -1, 0, -1, { details = true })) do
          local d = m[4] or {}
          for _, chunks in ipairs({ d.virt_text or {}, unpack(d.virt_lines or {}) }) do
            for _, c in ipairs(chunks) do
              text = text .. tostring(c[1])
            end
          end
        end
        ghost = text
        if text:find("a + b", 1, true) then
          -- Accept with the plugin's <Tab>; a later tick (still in insert mode) sees the line.
          state = "shown"
          shown_after = vim.uv.now() - t0
          vim.api.nvim_feedkeys(vim.api.nvim_replace_termcodes("<Tab>", true, false, true), "m", false)
        end
        return false
      end
      return vim.api.nvim_buf_get_lines(buf, 1, 2, false)[1] == "    return a + b"
    end, 15000)
    check("ghost text (vim.lsp.inline_completion) shows \"a + b\" (" .. late("shown") .. ")",
      state ~= "waiting", inspect1(ghost))
    check("the ghost text is a late answer: shown past the budget",
      state ~= "waiting" and shown_after >= delay_ms, late("shown"))
    local line = vim.api.nvim_buf_get_lines(buf, 1, 2, false)[1]
    check("<Tab> accepts it into the buffer", line == "    return a + b", line)
  end
  vim.cmd("stopinsert")
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, original)
  vim.api.nvim_win_set_cursor(0, { 2, 11 })

  -- 2. Code actions: the three built-in ones.
  local range_params = vim.lsp.util.make_range_params(0, client.offset_encoding)
  range_params.context = { diagnostics = {} }
  resp = vim.lsp.buf_request_sync(buf, "textDocument/codeAction", range_params, 15000) or {}
  r = resp[client.id]
  local actions = r and r.result or {}
  local titles, explain = {}, nil
  for _, a in ipairs(actions) do
    titles[#titles + 1] = a.title
    if a.command and a.command.command == "pilotfish.explain" then
      explain = a
    end
  end
  for _, t in ipairs({ "Pilotfish: Explain", "Pilotfish: Refactor", "Pilotfish: Security review" }) do
    check("code actions offer \"" .. t .. "\"", vim.tbl_contains(titles, t), inspect1(titles))
  end

  -- 3. Running Explain: the markdown comes back as the command's result.
  if check("the Explain action carries pilotfish.explain", explain ~= nil) then
    resp = vim.lsp.buf_request_sync(buf, "workspace/executeCommand", {
      command = explain.command.command,
      arguments = explain.command.arguments,
    }, 30000) or {}
    r = resp[client.id]
    local result = r and r.result or {}
    check("pilotfish.explain returns the double's markdown",
      type(result.markdown) == "string" and result.markdown:find("explained by the pilotfish model double", 1, true),
      inspect1(r))
    check("the result names the model that answered",
      type(result.model) == "string" and result.model:find("double", 1, true), inspect1(result.model))
  end

  -- 4. The <leader>pe keymap: code action → executeCommand → window/showDocument opens the page.
  local function explain_pages()
    local pages = {}
    for _, b in ipairs(vim.api.nvim_list_bufs()) do
      local name = vim.api.nvim_buf_get_name(b)
      if name:find("pilotfish/explain/", 1, true) and name:match("%.md$") then
        pages[#pages + 1] = b
      end
    end
    return pages
  end
  check("running Explain opened its page (window/showDocument)", #explain_pages() > 0)
  for _, b in ipairs(explain_pages()) do
    vim.cmd("silent! bwipeout! " .. b)
  end
  vim.cmd.buffer(buf)
  vim.api.nvim_win_set_cursor(0, { 2, 4 })
  vim.fn.maparg(leader .. "pe", "n", false, true).callback()
  local page
  local opened = vim.wait(30000, function()
    page = explain_pages()[1]
    return page ~= nil and vim.api.nvim_buf_is_loaded(page)
      and vim.api.nvim_buf_line_count(page) > 1
  end, 50)
  if check("<leader>pe opens the explanation page (window/showDocument)", opened) then
    local text = table.concat(vim.api.nvim_buf_get_lines(page, 0, -1, false), "\n")
    check("the page holds the double's explanation",
      text:find("explained by the pilotfish model double", 1, true) ~= nil, text:sub(1, 300))
  end

  -- 5. :checkhealth pilotfish finds the binary and says the models are reachable.
  vim.cmd("checkhealth pilotfish")
  local hb = vim.api.nvim_get_current_buf()
  local report = ""
  vim.wait(20000, function()
    report = table.concat(vim.api.nvim_buf_get_lines(hb, 0, -1, false), "\n")
    return report:find("reachable model", 1, true) ~= nil or report:find("failed", 1, true) ~= nil
  end, 100)
  check(":checkhealth pilotfish finds the binary", report:find("found: ", 1, true) ~= nil, report)
  check(":checkhealth pilotfish says every route has a reachable model",
    report:find("every route has a reachable model", 1, true) ~= nil, report)

  -- 6. :Pilotfish stats shows the usage log's summary: the calls made above.
  vim.cmd("Pilotfish stats")
  local stats = ""
  vim.wait(20000, function()
    local name = vim.api.nvim_buf_get_name(0)
    if not name:find("pilotfish://stats", 1, true) then
      return false
    end
    stats = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), "\n")
    return true
  end, 50)
  check(":Pilotfish stats shows the usage summary", stats:find("Pilotfish usage since", 1, true) ~= nil, stats)
  check(":Pilotfish stats counts the model calls", stats:match("\ntotal%s+%d+%s+[1-9]") ~= nil, stats)

  -- 7. The cursor resting in another function (normal mode): the plugin tells the server
  -- (an automatic code-action request at the cursor, as VS Code's light bulb asks), which
  -- reads that place's prompt into the model server's cache: a generate request that
  -- writes at most one token (num_predict 0 or 1, as Ollama takes it).
  local two_path = env.PILOTFISH_WORKSPACE .. "/two.py"
  vim.fn.writefile({ "def first(a):", "    return a", "", "", "def second(b):", "    b = b + 1",
    "    return b" }, two_path)
  vim.cmd.edit(vim.fn.fnameescape(two_path))
  local two = vim.api.nvim_get_current_buf()
  vim.wait(15000, function() return pilotfish.client(two) ~= nil end, 50)
  local function warm_ups()
    local found = {}
    for _, line in ipairs(vim.fn.readfile(env.PILOTFISH_DOUBLE_LOG)) do
      local ok_json, rec = pcall(vim.json.decode, line)
      local body = ok_json and type(rec) == "table" and rec.body
      if rec and rec.path == "/api/generate" and type(body) == "table"
        and (vim.tbl_get(body, "options", "num_predict") or 99) <= 1 then
        found[#found + 1] = body
      end
    end
    return found
  end
  local before = #warm_ups()
  vim.api.nvim_win_set_cursor(0, { 6, 4 })
  vim.api.nvim_exec_autocmds("CursorMoved", { buffer = two })
  local warmed
  vim.wait(10000, function()
    local all = warm_ups()
    warmed = all[before + 1]
    return warmed ~= nil
  end, 100)
  check("the cursor resting in another function warms its prompt (a generate with num_predict <= 1)",
    warmed ~= nil and tostring(warmed.prompt):find("def second%(b%):\n    $") ~= nil,
    warmed and inspect1(warmed.prompt) or ("no warm-up after the cursor rested; " .. before .. " before"))

  -- 8. A dos buffer: Neovim sends its text with \r\n, so the server's suggestions carry
  -- \r\n too; the lines they make in the buffer must not keep a \r (shown as ^M, written as
  -- \r\r\n). The double answers one line, so the multi-line item here is the server's shape
  -- written out; scripts/e2e-editors nvim012-dos shows it end to end on 0.12.
  for _, case in ipairs({
    { "a = 1\r\n    b = 2", { "a = 1", "    b = 2" } },
    { "a = 1\n    b = 2", { "a = 1", "    b = 2" } },
    { "a + b", { "a + b" } },
    { "a\r\n\r\nb\r\n", { "a", "", "b", "" } },
  }) do
    check("buffer lines of " .. inspect1(case[1]),
      vim.deep_equal(pilotfish.buffer_lines(case[1]), case[2]),
      inspect1(pilotfish.buffer_lines(case[1])))
  end
  local dos_path = env.PILOTFISH_WORKSPACE .. "/dos.py"
  vim.fn.writefile({ "def f(a):\r", "    \r", "" }, dos_path, "b")
  vim.cmd.edit(vim.fn.fnameescape(dos_path))
  local dos = vim.api.nvim_get_current_buf()
  check("dos.py opens as a dos buffer", vim.bo[dos].fileformat == "dos", vim.bo[dos].fileformat)
  vim.api.nvim_buf_set_lines(dos, 1, 2, false, { "    x" })
  -- After the menu inserted "x", in insert mode: the cursor past the line's last character.
  vim.o.virtualedit = "onemore"
  vim.api.nvim_win_set_cursor(0, { 2, 5 })
  pilotfish.finish_completion(dos, "x", { textEdit = { newText = "x = a\r\n    return x" } })
  vim.o.virtualedit = ""
  local dos_lines = vim.api.nvim_buf_get_lines(dos, 0, -1, false)
  check("the rest of a menu item makes lines without \\r in a dos buffer",
    vim.deep_equal(dos_lines, { "def f(a):", "    x = a", "    return x" }), inspect1(dos_lines))
  -- The inline path (0.12): items reach Neovim's handler with \n line breaks.
  local fake = { request = function(_, _, _, handler)
    handler(nil, { items = { { insertText = "x = a\r\n    return x" } } }, {})
  end }
  pilotfish.inline_items_with_lf(fake)
  local got
  fake:request("textDocument/inlineCompletion", {}, function(_, result) got = result end)
  check("inline items reach Neovim with \\n line breaks",
    got and got.items[1].insertText == "x = a\n    return x", inspect1(got))
end, debug.traceback)

if not ok then
  check("the test ran to the end", false, err)
end
finish()
