-- Argo CD health check of dgm.io/ImprovementCandidate (Lua 5.1, the live object in `obj`).
--   Progressing  no status yet, Proposed, Testing, or status.observedGeneration behind
--                metadata.generation while the operator still works on the candidate
--   Suspended    Validated and waiting for a person (reason AwaitingApproval or AgentPaused)
--   Healthy      Validated, Applied, Rejected (a rejection is a normal outcome of the search)
--   Degraded     Failed, RolledBack, or Applied but its rollout did not progress (RolloutFailed)
local hs = {}

local function message(status, fallback)
  if status.message ~= nil and status.message ~= "" then
    return status.message
  end
  if status.reason ~= nil and status.reason ~= "" then
    return status.reason
  end
  return fallback
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for dgm-operator to analyse the candidate"
  return hs
end

local phase = status.phase
-- Rejected, Failed and RolledBack are final: the operator no longer writes their status,
-- so a later spec edit (e.g. spec.approved) must not leave them Progressing forever.
-- Applied candidates are only revisited for their rollout, so the same holds.
local final = phase == "Rejected" or phase == "Failed" or phase == "RolledBack" or phase == "Applied"
local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
if not final and generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for dgm-operator to observe generation " .. tostring(generation)
  return hs
end

if phase == "Failed" or phase == "RolledBack" then
  hs.status = "Degraded"
  hs.message = phase .. ": " .. message(status, "no details")
  return hs
end

if phase == "Applied" then
  if status.reason == "RolloutFailed" then
    hs.status = "Degraded"
  else
    hs.status = "Healthy"
  end
  local text = message(status, "applied")
  if status.revision ~= nil then
    text = "Revision " .. tostring(status.revision) .. ": " .. text
  end
  hs.message = text
  return hs
end

if phase == "Validated" then
  if status.reason == "AwaitingApproval" or status.reason == "AgentPaused" then
    hs.status = "Suspended"
  else
    hs.status = "Healthy"
  end
  hs.message = message(status, "validated")
  return hs
end

if phase == "Rejected" then
  hs.status = "Healthy"
  hs.message = "Rejected: " .. message(status, "no details")
  return hs
end

if phase == "Proposed" or phase == "Testing" then
  hs.status = "Progressing"
  hs.message = phase .. ": " .. message(status, "in progress")
  return hs
end

hs.status = "Unknown"
hs.message = "Unknown phase " .. tostring(phase)
return hs
