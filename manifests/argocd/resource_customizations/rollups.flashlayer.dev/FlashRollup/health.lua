-- Argo CD health check of rollups.flashlayer.dev/FlashRollup.
--   Progressing  Pending, Provisioning, Settling; being deleted; status not caught up with the spec
--   Healthy      Running; Settled or TornDown with teardown.policy Retain (the chain's life is over
--                and the object stays on purpose, so that self-heal does not start a new chain)
--   Degraded     Failed; quorum lost; a verifier raised an alert (the condition's message says why)
-- Argo CD runs it without the string and math libraries: only base functions and `..`.
local hs = {}

local function condition(ctype)
  if obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function text(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

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

if obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Deleting: the rollup settles (unless its policy is Discard) and tears down first"
  return hs
end

if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Flashlayer operator to pick up the rollup"
  return hs
end

local phase = obj.status.phase
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. int(generation) .. " (status is " .. phase .. ")"
  return hs
end

local ready = condition("Ready")

if phase == "Failed" then
  hs.status = "Degraded"
  if ready ~= nil and ready.reason ~= nil then
    hs.message = "Failed (" .. ready.reason .. "): " .. text(ready, "see the rollup's conditions and events")
  else
    hs.message = "Failed: " .. text(ready, "see the rollup's conditions and events")
  end
  return hs
end

local retain = true
if obj.spec ~= nil and obj.spec.teardown ~= nil and obj.spec.teardown.policy == "Delete" then
  retain = false
end

if phase == "Settled" or phase == "TornDown" then
  if not retain then
    hs.status = "Progressing"
    hs.message = phase .. ": the FlashRollup is deleted once its workloads are gone (teardown.policy Delete)"
    return hs
  end
  local outcome
  local settlement = obj.status.settlement
  if settlement ~= nil and settlement.txHash ~= nil then
    outcome = "final block " .. int(settlement.finalHeight) .. " settled in L1 transaction " .. settlement.txHash
  else
    outcome = text(condition("Settled"), "the rollup's life is over")
  end
  hs.status = "Healthy"
  if phase == "TornDown" then
    hs.message = "TornDown: " .. outcome .. "; every workload is gone"
  else
    hs.message = "Settled: " .. outcome .. "; tearing down the workloads"
  end
  return hs
end

-- The operator re-evaluates QuorumMet only until the rollup stops running; later it is history.
local quorum = condition("QuorumMet")
if (phase == "Provisioning" or phase == "Running") and quorum ~= nil and quorum.status == "False" and quorum.reason == "QuorumLost" then
  hs.status = "Degraded"
  hs.message = "QuorumLost: " .. text(quorum, "not enough assigned stake is Ready")
  return hs
end

local degraded = condition("Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = (degraded.reason or "Degraded") .. ": " .. text(degraded, "the rollup misbehaves")
  return hs
end

if phase == "Running" then
  hs.status = "Healthy"
  local blocks = ""
  if obj.status.height ~= nil then
    blocks = " at block " .. int(obj.status.height)
    if obj.status.finalizedHeight ~= nil then
      blocks = blocks .. " (finalized " .. int(obj.status.finalizedHeight) .. ")"
    end
  end
  if obj.status.expiresAt ~= nil then
    hs.message = "Running" .. blocks .. "; settles at " .. obj.status.expiresAt
  else
    hs.message = "Running" .. blocks
  end
  return hs
end

if phase == "Pending" then
  hs.status = "Progressing"
  hs.message = "Pending: " .. text(quorum, text(ready, "waiting for AVS operators"))
  return hs
end

if phase == "Provisioning" then
  hs.status = "Progressing"
  hs.message = "Provisioning: " .. text(ready, "creating the workloads")
  return hs
end

if phase == "Settling" then
  hs.status = "Progressing"
  hs.message = "Settling: " .. text(condition("Settling"), "sealing, certifying and submitting the final state")
  return hs
end

hs.status = "Unknown"
hs.message = "Unknown phase " .. phase
return hs
