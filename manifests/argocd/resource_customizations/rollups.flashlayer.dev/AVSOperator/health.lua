-- Argo CD health check of rollups.flashlayer.dev/AVSOperator.
--   Progressing  not checked by the Flashlayer operator yet, or status not caught up with the spec
--   Healthy      Ready (its BLS key Secret exists)
--   Suspended    spec.suspend: it takes no new rollups and the ones it verified got a replacement
--   Degraded     not Ready (e.g. its key Secret is missing), or one of its verifiers raised an alert
--                about a rollup it still verifies (the message says which block and why)
-- Argo CD runs it without the string and math libraries: only base functions and `..`.
local hs = {}

-- tostring() of a number differs between Lua 5.1 and gopher-lua for large values: print whole
-- numbers digit by digit.
local digits = { "0", "1", "2", "3", "4", "5", "6", "7", "8", "9" }
local function int(n)
  if type(n) ~= "number" or n < 0 then
    return "?"
  end
  n = n - n % 1
  local out = ""
  repeat
    local d = n % 10
    out = digits[d + 1] .. out
    n = (n - d) / 10
  until n < 1
  return out
end

local status = obj.status
if status == nil or (status.ready == nil and status.conditions == nil) then
  hs.status = "Progressing"
  hs.message = "Waiting for the Flashlayer operator to check the operator"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. int(generation)
  return hs
end

local ready = nil
if status.conditions ~= nil then
  for _, c in ipairs(status.conditions) do
    if c.type == "Ready" then
      ready = c
    end
  end
end
local is_ready = status.ready == "True"
if ready ~= nil then
  is_ready = ready.status == "True"
end

if not is_ready then
  if ready ~= nil and ready.reason == "Suspended" then
    hs.status = "Suspended"
    hs.message = ready.message
    return hs
  end
  hs.status = "Degraded"
  if ready ~= nil then
    hs.message = ready.reason .. ": " .. ready.message
  else
    hs.message = "Not Ready"
  end
  return hs
end

-- Alerts are kept oldest first; the newest one matters while its rollup is still verified here.
if status.alerts ~= nil and status.assignedRollups ~= nil then
  for i = table.maxn(status.alerts), 1, -1 do
    local alert = status.alerts[i]
    for _, rollup in ipairs(status.assignedRollups) do
      if alert.rollup == rollup then
        hs.status = "Degraded"
        hs.message = "VerifierAlert: " .. rollup .. " block " .. int(alert.number) .. ": " .. alert.message
        return hs
      end
    end
  end
end

local count = status.assignedCount or 0
local verifying
if obj.spec ~= nil and obj.spec.capacity ~= nil then
  verifying = "verifying " .. int(count) .. " of up to " .. int(obj.spec.capacity) .. " rollups"
elseif count == 1 then
  verifying = "verifying 1 rollup"
else
  verifying = "verifying " .. int(count) .. " rollups"
end
hs.status = "Healthy"
if ready ~= nil and ready.message ~= nil and ready.message ~= "" then
  hs.message = "Ready (" .. ready.message .. "), " .. verifying
else
  hs.message = "Ready, " .. verifying
end
return hs
