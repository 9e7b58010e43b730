-- wrk script: PUT the same manifest bytes under a distinct tag per request.
-- Environment (set by bench.py):
--   BENCH_MANIFEST    path of the manifest file (bytes sent as the body)
--   BENCH_CTYPE       Content-Type of the manifest
--   BENCH_REPO        repository name
--   BENCH_TAG_PREFIX  prefix that makes tags unique across runs
-- Tag for request k of wrk thread i: <prefix>-<i>-<k>. Every PUT therefore creates a new tag that
-- points at the same manifest digest (the manifest content itself is identical each time).

local f = assert(io.open(os.getenv("BENCH_MANIFEST"), "rb"))
local body = f:read("*a")
f:close()
local ctype = os.getenv("BENCH_CTYPE")
local repo = os.getenv("BENCH_REPO")
local prefix = os.getenv("BENCH_TAG_PREFIX") or "t"

local nthreads = 0
function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
end

local n = 0
local headers = { ["Content-Type"] = ctype }
function request()
  n = n + 1
  local path = "/v2/" .. repo .. "/manifests/" .. prefix .. "-" .. tostring(tid) .. "-" .. n
  return wrk.format("PUT", path, headers, body)
end
