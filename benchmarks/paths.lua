-- Spread the load over the example's pages, its JSON API and a 404, as a browser suite would.
local paths = {"/", "/api/tasks", "/tasks/1", "/", "/tasks/404"}
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
