// The three Microsoft Sentinel playbooks that call the gateway (playbooks/*/azuredeploy.json), deployed
// as modules from their ARM templates, into the resource group of this deployment.
//
// Each playbook is a Logic App with a system-assigned identity that calls the gateway with a token
// for the gateway's Entra app (the gateway runs with gatewayAuth=entra). After deployment:
//   * the gateway must let the identities through: main.bicep does that itself when it deploys
//     this module (deployPlaybooks=true); deployed on its own, their principal ids (outputs below)
//     belong in main.bicep's entraAllowedPrincipalIds;
//   * each identity needs Microsoft Sentinel Responder on the Sentinel workspace to comment on incidents
//     (see playbooks/README.md: the workspace usually lives in another resource group).
// Nothing secret goes through here: the playbooks hold no key.

@minLength(9)
@description('Base URL of the gateway, e.g. https://func-mdegw-abc123.azurewebsites.net (https:// and main.bicep\'s output FUNCTION_APP_HOSTNAME). A trailing / or /api is dropped.')
param gatewayUrl string

@minLength(1)
@description('Audience of the gateway\'s Entra app registration that the playbooks request their tokens for: its App ID URI api://<client id> (entra-auth.bicep\'s output tokenAudience), or the client id.')
param gatewayAudience string

@minLength(1)
@maxLength(80)
@description('Name of the Logic App that comments an incident with the Defender alerts of its SHA-1/SHA-256 FileHash entities.')
param enrichPlaybookName string = 'Enrich-Incident-DefenderFileAlerts'

@minLength(1)
@maxLength(80)
@description('Name of the Logic App that creates Defender alerts from the ReportId, Timestamp and DeviceId custom details of an incident\'s alerts.')
param createPlaybookName string = 'Create-DefenderAlert-FromIncident'

@minLength(1)
@maxLength(80)
@description('Name of the Logic App that hunts the events of an incident\'s SHA-1/SHA-256 FileHash entities (advanced hunting through the gateway) and creates a Defender alert on each device\'s latest event, at most huntMaxDevices devices per file.')
param huntPlaybookName string = 'Hunt-And-Alert-DefenderFile'

@minValue(1)
@maxValue(50)
@description('The hunt playbook creates alerts on at most this many devices per file hash (those with the newest events).')
param huntMaxDevices int = 10

@allowed([
  'General'
  'CommandAndControl'
  'Collection'
  'CredentialAccess'
  'DefenseEvasion'
  'Discovery'
  'Exfiltration'
  'Exploit'
  'Execution'
  'InitialAccess'
  'LateralMovement'
  'Malware'
  'Persistence'
  'PrivilegeEscalation'
  'Ransomware'
  'SuspiciousActivity'
])
@description('Category of the Defender alerts that the create and hunt playbooks create.')
param alertCategory string = 'SuspiciousActivity'

@minLength(1)
@maxLength(4096)
@description('Recommended action of the Defender alerts that the create and hunt playbooks create.')
param recommendedAction string = 'Investigate the device and the event in Microsoft Defender for Endpoint, and the Microsoft Sentinel incident named in the description.'

module enrichPlaybook '../playbooks/Enrich-Incident-DefenderFileAlerts/azuredeploy.json' = {
  name: 'playbook-enrich-defender-file-alerts'
  params: {
    PlaybookName: enrichPlaybookName
    GatewayUrl: gatewayUrl
    GatewayAudience: gatewayAudience
  }
}

module createPlaybook '../playbooks/Create-DefenderAlert-FromIncident/azuredeploy.json' = {
  name: 'playbook-create-defender-alert'
  params: {
    PlaybookName: createPlaybookName
    GatewayUrl: gatewayUrl
    GatewayAudience: gatewayAudience
    AlertCategory: alertCategory
    RecommendedAction: recommendedAction
  }
}

module huntPlaybook '../playbooks/Hunt-And-Alert-DefenderFile/azuredeploy.json' = {
  name: 'playbook-hunt-and-alert-defender-file'
  params: {
    PlaybookName: huntPlaybookName
    GatewayUrl: gatewayUrl
    GatewayAudience: gatewayAudience
    MaxDevices: huntMaxDevices
    AlertCategory: alertCategory
    RecommendedAction: recommendedAction
  }
}

@description('Object (principal) id of the enrich playbook\'s managed identity: belongs in the gateway\'s entraAllowedPrincipalIds and needs Microsoft Sentinel Responder on the workspace.')
output enrichPlaybookPrincipalId string = enrichPlaybook.outputs.principalId

@description('Object (principal) id of the create playbook\'s managed identity: belongs in the gateway\'s entraAllowedPrincipalIds and needs Microsoft Sentinel Responder on the workspace.')
output createPlaybookPrincipalId string = createPlaybook.outputs.principalId

@description('Object (principal) id of the hunt playbook\'s managed identity: belongs in the gateway\'s entraAllowedPrincipalIds and needs Microsoft Sentinel Responder on the workspace.')
output huntPlaybookPrincipalId string = huntPlaybook.outputs.principalId

@description('Resource id of the enrich playbook (Logic App).')
output enrichPlaybookId string = enrichPlaybook.outputs.playbookId

@description('Resource id of the create playbook (Logic App).')
output createPlaybookId string = createPlaybook.outputs.playbookId

@description('Resource id of the hunt playbook (Logic App).')
output huntPlaybookId string = huntPlaybook.outputs.playbookId
