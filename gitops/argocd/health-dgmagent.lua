-- Argo CD health check of dgm.io/DGMAgent (Lua 5.1, run by Argo CD with the live object in `obj`).
--   Progressing  no status yet, status.observedGeneration behind metadata.generation, or Baselining
--   Degraded     condition Degraded=True, or Ready=False for a reason other than Baselining
--   Suspended    spec.paused (phase Paused): the improvement loop is stopped on purpose
--   Healthy      Ready=True
local hs = {}

local function condition(status, ctype)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
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

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for dgm-operator to observe the agent"
  return hs
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for dgm-operator to observe generation " .. tostring(generation)
  return hs
end

local degraded = condition(status, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = text(degraded, degraded.reason or "Degraded")
  return hs
end

local ready = condition(status, "Ready")
if status.phase == "Baselining" or (ready ~= nil and ready.status ~= "True" and ready.reason == "Baselining") then
  hs.status = "Progressing"
  hs.message = text(ready, "Measuring the baseline")
  return hs
end

if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = text(ready, ready.reason or "Not ready")
  return hs
end

if ready ~= nil and ready.status == "True" then
  if status.phase == "Paused" then
    hs.status = "Suspended"
    hs.message = "Paused (spec.paused): no new candidates"
    return hs
  end
  hs.status = "Healthy"
  local message = text(ready, "Ready")
  if status.currentRevision ~= nil then
    message = "Revision " .. tostring(status.currentRevision) .. ": " .. message
  end
  hs.message = message
  return hs
end

hs.status = "Progressing"
hs.message = text(status, "Phase " .. tostring(status.phase or "unknown"))
return hs
