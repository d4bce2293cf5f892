// The function app: a Python app (main.bicep's pythonVersion) on a Flex Consumption (FC1) plan, deployed from a blob container with
// its managed identity, HTTPS only, no basic publishing credentials. Its app settings are main.bicep's (they
// need the playbooks' identities); authentication is entra-auth.bicep's. Deployed by main.bicep.

@description('Name of the function app.')
param functionAppName string

@description('Name of the Flex Consumption plan.')
param planName string

@description('Azure region of the plan and the app.')
param location string

@description('Tags of the plan and the app (the app also gets azd-service-name=api).')
param tags object

@allowed([
  'SystemAssigned'
  'UserAssigned'
])
@description('Managed identity of the app: SystemAssigned, or UserAssigned (userAssignedIdentityId). main.bicep always passes it; the default keeps a scanner that reads this file alone (checkov) from guessing.')
param identityType string = 'SystemAssigned'

@description('Resource id of the user-assigned identity (identityType UserAssigned); empty otherwise.')
param userAssignedIdentityId string = ''

@description('Name of the storage account that holds the deployment container (storage.bicep).')
param storageAccountName string

@description('Blob container the app package is deployed to.')
param deploymentContainerName string

@allowed([
  '3.11'
  '3.12'
  '3.13'
])
@description('Python version of the app (main.bicep\'s pythonVersion, where the choice is explained).')
param pythonVersion string

@minValue(40)
@maxValue(1000)
@description('The most instances the app may scale out to (main.bicep\'s maximumInstanceCount: 40 is the lowest Flex accepts in most regions).')
param maximumInstanceCount int

@allowed([
  2048
  4096
])
@description('Memory of each instance in MB (main.bicep\'s instanceMemoryMB).')
param instanceMemoryMB int

@minValue(1)
@maxValue(32)
@description('HTTP calls one instance runs at once (scaleAndConcurrency.triggers.http.perInstanceConcurrency).')
param httpPerInstanceConcurrency int

@minValue(0)
@maxValue(3)
@description('Always-ready instances of each waiting-queue function (0: none, no standing cost).')
param waitingFunctionsAlwaysReady int

@description('Spread the instances over availability zones.')
param zoneRedundant bool

var useUserAssigned = (identityType == 'UserAssigned')

// The waiting-queue functions (request_queue_fn), as Flex names them for always-ready instances (lower case).
var waitingFunctionNames = [
  'WaitCreateAlert'
  'WaitFileAlerts'
  'WaitFileInfo'
  'WaitHunting'
]
var waitingAlwaysReady = [for name in waitingFunctionNames: {
  name: 'function:${toLower(name)}'
  instanceCount: waitingFunctionsAlwaysReady
}]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Opt-in through the zoneRedundant parameter: on Flex Consumption it keeps at least two always-ready instances billed around the clock and only some regions offer it. The gateway keeps no state on its instances (its rate-limit state is in the storage account, ZRS by default) and its callers retry 5xx.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
    zoneRedundant: zoneRedundant
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: The gateway is an HTTPS API for Logic Apps and automation that run outside any VNet. Every call needs a function key or, with gatewayAuth=entra, an Entra ID token that App Service authentication validates; private endpoints need a VNet, which is not part of this template.
  // checkov:skip=CKV_AZURE_17: Callers authenticate with a function key or an Entra ID bearer token (gatewayAuth). Mutual TLS would need every caller to hold a client certificate, which Logic Apps with managed identities avoid, and App Service only forwards the certificate: nothing here would validate it.
  // checkov:skip=CKV_AZURE_212: siteConfig.numberOfWorkers does not apply to Flex Consumption: the platform adds instances on demand (functionAppConfig.scaleAndConcurrency) and replaces failed ones itself.
  // checkov:skip=CKV_AZURE_213: App Service health check (siteConfig.healthCheckPath) belongs to Dedicated and Premium plans; Flex Consumption instances are run and replaced by the Functions scale controller.
  name: functionAppName
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: identityType
    userAssignedIdentities: useUserAssigned ? {
      '${userAssignedIdentityId}': {}
    } : null
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientAffinityEnabled: false
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: useUserAssigned ? {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: userAssignedIdentityId
          } : {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        triggers: {
          http: {
            perInstanceConcurrency: httpPerInstanceConcurrency
          }
        }
        alwaysReady: (waitingFunctionsAlwaysReady == 0) ? [] : waitingAlwaysReady
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

// No basic (user name + password) publishing: deployments authenticate with Entra ID.
resource ftpPublishingPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishingPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

@description('Name of the function app.')
output name string = functionApp.name

@description('Default host name of the function app.')
output defaultHostName string = functionApp.properties.defaultHostName

@description('Resource id of the function app.')
output id string = functionApp.id

@description('Object (principal) id of the system-assigned identity; empty with a user-assigned identity.')
output principalId string = useUserAssigned ? '' : functionApp.identity.principalId
