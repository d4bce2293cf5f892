// The gateway's storage account: Flex deployment packages and host state (blobs), the results too large for an
// operation's table entity (blobs in the results container, RESULTS_CONTAINER), the tables (rate limits, shared
// answers, the SHA-256 map, operations) and the queues (requests, one waiting queue per upstream API, each with
// its poison queue). Entra (RBAC) access only: no account keys, no SAS, no anonymous reads.
// Deployed by main.bicep.

@minLength(3)
@maxLength(24)
@description('Name of the storage account: 3-24 lowercase letters and digits.')
param storageAccountName string

@description('Azure region of the account.')
param location string

@description('Tags of the account.')
param tags object

@allowed([
  'Standard_ZRS'
  'Standard_LRS'
  'Standard_GZRS'
  'Standard_GRS'
])
@description('Replication of the account: Standard_ZRS survives the loss of a zone; Standard_LRS where there are no zones.')
param skuName string

@description('Blob container that Flex Consumption deploys the app package to.')
param deploymentContainerName string

@minLength(3)
@maxLength(63)
@description('Blob container of the asynchronous answers too large for an operation\'s table entity (RESULTS_CONTAINER): large hunting results, deleted with their operation.')
param resultsContainerName string

@description('Table of the shared rate-limit state (RATE_LIMIT_TABLE).')
param rateLimitTableName string

@description('Table of the shared file-alerts answers (ANSWER_CACHE_TABLE).')
param answerCacheTableName string

@description('Table mapping each resolved SHA-256 to its SHA-1 (FILE_HASH_TABLE).')
param fileHashTableName string

@description('Table of asynchronous operations (OPERATIONS_TABLE).')
param operationsTableName string

@maxLength(43)
@description('Queue of asynchronous requests (REQUESTS_QUEUE); its waiting queues and every poison queue are named from it.')
param requestsQueueName string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: Without VNet integration (not part of this template) Flex Consumption reaches its host storage over the public endpoint. The account accepts Entra ID only (allowSharedKeyAccess false) from identities holding an RBAC data role on it, over TLS 1.2, with no anonymous blob access.
  // checkov:skip=CKV_AZURE_59: Same as CKV_AZURE_35: Flex Consumption without VNet integration needs the public endpoint; access is Entra-only and RBAC-scoped (no account keys, no SAS, no anonymous reads).
  // checkov:skip=CKV_AZURE_206: The data is ephemeral (rate-limit windows of at most an hour, and the app package that every deployment re-uploads); a Flex app and its storage share one region, so a regional outage means redeploying elsewhere, not failing over storage. The default ZRS survives a zone failure.
  // checkov:skip=CKV_AZURE_43: The name is 'stmdegw' + uniqueString(...) = 20 lowercase letters and digits, computed at deployment so checkov cannot read it; tests/infra/test_bicep_structure.py checks the pattern and length.
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
        file: {
          enabled: true
          keyType: 'Account'
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Large asynchronous answers (hunting results over a table entity's size): written and deleted by the gateway's
// identity, which holds Storage Blob Data Contributor on this container for them (roles.bicep); its account-wide
// Storage Blob Data Owner (the Functions host's) reaches this container too.
resource resultsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: resultsContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource rateLimitTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: rateLimitTableName
}

resource answerCacheTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: answerCacheTableName
}

resource fileHashTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: fileHashTableName
}

resource operationsTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: operationsTableName
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource requestsQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: requestsQueueName
}

resource requestsPoisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: '${requestsQueueName}-poison'
}

// Requests wait for a spent budget in their API's own queue (shared/asynchronous/queue_names.py waiting_suffix),
// each read by its own function, so one API's storm never holds up the others.
var waitingQueueSuffixes = [
  'create-alert'
  'file-alerts'
  'file-info'
  'hunting'
]

resource waitingQueues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for suffix in waitingQueueSuffixes: {
  parent: queueService
  name: '${requestsQueueName}-${suffix}'
}]

resource waitingPoisonQueues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for suffix in waitingQueueSuffixes: {
  parent: queueService
  name: '${requestsQueueName}-${suffix}-poison'
}]

@description('Name of the storage account.')
output name string = storage.name

@description('Name of the blob container of large asynchronous answers.')
output resultsContainerName string = resultsContainer.name

@description('Name of the rate-limit table.')
output rateLimitTableName string = rateLimitTable.name

@description('Name of the shared-answers table.')
output answerCacheTableName string = answerCacheTable.name

@description('Name of the SHA-256 map table.')
output fileHashTableName string = fileHashTable.name

@description('Name of the operations table.')
output operationsTableName string = operationsTable.name

@description('Name of the request queue.')
output requestsQueueName string = requestsQueue.name
