-- The ASGI example (Shortlinks) as a browser suite loads it: its page, its JSON API and a 404.
local paths = {"/", "/api/links", "/", "/links/nothing-here"}
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
