-- Argo CD health check for the mediastack.io kinds (MediaStack, VpnGateway,
-- IngressRoute). Install it under resource.customizations.health.<group>_<kind>
-- in argocd-cm: see docs/gitops.md.
--
-- The operator writes kstatus conditions (Ready, Reconciling, Stalled) and
-- status.observedGeneration on every kind:
--   Progressing  until the operator has observed the current generation;
--   Degraded     when Stalled is True (invalid spec, missing Secret or claim:
--                waits for a change, the message says which);
--   Healthy      when Ready is True;
--   Progressing  otherwise (apps starting, waiting for a VpnGateway, ...).
local hs = {}

local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function text(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c ~= nil and c.reason ~= nil and c.reason ~= "" then
    return c.reason
  end
  return fallback
end

local generation = obj.metadata.generation
local observed = nil
if obj.status ~= nil then
  observed = obj.status.observedGeneration
end
if observed == nil or (generation ~= nil and observed ~= generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = text(stalled, "Stalled")
  return hs
end

local ready = condition("Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = text(ready, "Ready")
  return hs
end

hs.status = "Progressing"
hs.message = text(condition("Reconciling"), text(ready, "Reconciling"))
return hs
