// The Azure roles of the app's managed identity, each on the one resource it needs, with guid() names that stay
// the same across re-deployments: blob data (host state, deployment packages; account-wide Owner, so it reaches
// the results container too), blob data on the results container (the gateway's large asynchronous answers: what
// the gateway itself needs), queue data (the request and waiting queues), table
// data (the gateway's tables) and metrics publishing (Entra-authenticated telemetry).
// Deployed by main.bicep. The Defender for Endpoint app roles and Graph's ThreatHunting.Read.All are
// defender-roles.bicep's.

@description('Name of the gateway\'s storage account (storage.bicep).')
param storageAccountName string

@description('Name of the blob container of large asynchronous answers (storage.bicep; RESULTS_CONTAINER).')
param resultsContainerName string

@description('Name of the Application Insights component (monitoring.bicep).')
param appInsightsName string

@description('Object (principal) id of the app\'s managed identity.')
param identityPrincipalId string

@description('A value known at the start of the deployment that names the identity (its resource id, or the app\'s): seeds the assignments\' guid() names.')
param identityKey string

// Built-in role definitions (ids are the same in every tenant and cloud).
var storageBlobDataOwnerRoleId = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var storageQueueDataContributorRoleId = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var storageTableDataContributorRoleId = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource resultsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: resultsContainerName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

// Host state, deployment packages (Flex reads the package with the identity) and blob leases.
resource blobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identityKey, storageBlobDataOwnerRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwnerRoleId)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The gateway's own blobs: large asynchronous answers, written, read and deleted in the results container only
// (least privilege: Contributor, not Owner, and on the container, not the account). The host's account-wide Blob
// Data Owner above also reaches the container today; this assignment is what the gateway itself needs, and stays
// right if the host's storage ever moves to an account of its own.
resource resultsBlobDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resultsContainer.id, identityKey, storageBlobDataContributorRoleId)
  scope: resultsContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Host queues (AzureWebJobsStorage__queueServiceUri).
resource queueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identityKey, storageQueueDataContributorRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributorRoleId)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The gateway's tables (rate limits, shared answers, the SHA-256 map, operations).
resource tableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identityKey, storageTableDataContributorRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRoleId)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Entra-authenticated telemetry (the component has local auth disabled).
resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identityKey, monitoringMetricsPublisherRoleId)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}
