// mde-alert-gateway: the Azure resources for one deployment of the gateway.
//
// A Python function app (pythonVersion, 3.13 by default) on the Flex Consumption (FC1) plan, its storage account (deployment
// packages, host state and the rate-limit table; no account keys), Log Analytics + Application
// Insights (Entra-only ingestion), the RBAC role assignments of the app's managed identity, and
// optionally App Service authentication (Entra ID) in front of the functions and the three Microsoft
// Sentinel playbooks that call the gateway through it (playbooks.bicep).
//
// Written for `azd up` (see azure.yaml) and for `az deployment group create` (see docs/deploy.md).
// This file names things and composes local modules, one per concern: storage.bicep (the account, its
// tables and queues), monitoring.bicep (Log Analytics, Application Insights), function-app.bicep (the Flex
// plan and the app), entra-auth.bicep (App Service authentication), roles.bicep (the identity's Azure
// roles), observability.bicep (the workbook and alert rules), playbooks.bicep and defender-roles.bicep
// (optional). Here: the identity and the app settings.
// Local modules only (no registry modules) so that checkov can scan everything; every parameter and
// output has a @description; role assignments have deterministic guid() names; no secrets.
//
// The Defender for Endpoint app roles (Alert.Read.All, Alert.ReadWrite.All, File.Read.All) and Microsoft Graph's
// ThreatHunting.Read.All (advanced hunting) are granted by defender-roles.bicep (Microsoft Graph Bicep extension), called from here only when
// grantDefenderAppRoles is true, because the deployer then needs Entra permissions that an Azure
// subscription role does not give; scripts/grant-defender-roles.sh is the plain az CLI alternative.

targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

@minLength(1)
@maxLength(64)
@description('Name of the environment (azd sets it from AZURE_ENV_NAME). Part of the seed of the unique resource names and of the azd-env-name tag.')
param environmentName string

@minLength(1)
@description('Azure region of every resource. Must offer the Flex Consumption plan (az functionapp list-flexconsumption-locations). Defaults to the region of the resource group.')
param location string = resourceGroup().location

@description('Extra tags for every resource. azd-env-name is always added, azd-service-name=api on the function app.')
param tags object = {}

@allowed([
  'SystemAssigned'
  'UserAssigned'
])
@description('Managed identity of the function app: SystemAssigned (default; lives and dies with the app) or UserAssigned (created here; survives re-creation of the app, so its Defender app roles can be granted once).')
param identityType string = 'SystemAssigned'

@description('Name of the user-assigned identity created when identityType is UserAssigned. Empty: id-mdegw-<unique token>.')
param userAssignedIdentityName string = ''

@allowed([
  'commercial'
  'us'
  'eu'
  'uk'
  'au'
  'swa'
  'ina'
  'gcc'
  'gcc-high'
  'dod'
])
@description('Defender for Endpoint cloud (MDE_CLOUD): chooses the API host and the token scope. Must match shared/defender/clouds.py.')
param mdeCloud string = 'commercial'

@allowed([
  'function-key'
  'entra'
])
@description('How callers authenticate (GATEWAY_AUTH). function-key: callers present a function key (the operator routes the admin key). entra: App Service authentication (Entra ID) validates a bearer token on every call (unauthenticated calls get 401), and the gateway validates it again itself and requires the app role of each call (Alerts.Read, Alerts.Create, Hunting.Read, Operations.Read, Gateway.Operate; entra-auth.bicep); needs entraClientId.')
param gatewayAuth string = 'function-key'

@description('Entra ID only (gatewayAuth=entra): application (client) id of the app registration that represents the gateway API. Callers request tokens for it (for example api://<client id>). No client secret is needed: the platform only validates tokens.')
param entraClientId string = ''

@description('Entra ID only: accepted token audiences. Empty: api://<entraClientId> and <entraClientId>.')
param entraAllowedAudiences array = []

@description('Entra ID only: application (client) ids allowed to call, for example the client id of a Logic App\'s managed identity (the appid/azp claim). Empty: any application holding the gateway\'s app role for the call (assigned on its app registration); a list narrows further.')
param entraAllowedApplications array = []

@description('Entra ID only: object (principal) ids allowed to call, for example the principal id of a Logic App\'s managed identity (the oid claim). Empty: any principal holding the gateway\'s app role for the call; a list narrows further.')
param entraAllowedPrincipalIds array = []

@description('Entra ID only: uniqueName of the gateway\'s app registration (entraClientId\'s; an app made outside Bicep gets one with a PATCH, docs/deploy.md). With it, entra-auth.bicep defines the gateway\'s app roles on it, asks for v2.0 tokens, requires assignment on its service principal and assigns the playbooks\' identities their roles (Microsoft Graph Bicep; the deployer needs Application.ReadWrite.All and AppRoleAssignment.ReadWrite.All). Empty: do that with the az CLI (docs/deploy.md); the gateway requires the roles either way.')
param entraAppUniqueName string = ''

@description('When the maintenance sweep runs (MAINTENANCE_SCHEDULE, a six-field NCRONTAB: second minute hour day month weekday): it deletes expired operations and finishes the operations an instance left in flight when it died, so recovery takes the claim lease plus at most this period.')
param maintenanceSchedule string = '0 */1 * * * *'

@description('Entra ID only: OpenID issuer of the tenant. Empty: <login endpoint of this cloud><tenant id>/v2.0.')
param entraOpenIdIssuer string = ''

@description('Entra ID only (ignored with gatewayAuth=function-key): also deploy the three Microsoft Sentinel playbooks (playbooks.bicep: Logic Apps that call the gateway with their system-assigned managed identity, for the first accepted audience) into this resource group, and, when entraAllowedPrincipalIds lists principals, add the playbooks\' principal ids to it (an empty list, any principal holding the gateway\'s app role, stays so); with entraAllowedApplications set, add the playbooks\' client ids to it yourself. With entraAppUniqueName their identities are assigned the gateway\'s app roles they need (enrich: Alerts.Read and Operations.Read; create: Alerts.Create and Operations.Read; hunt: Hunting.Read, Alerts.Create and Operations.Read); without it, assign them yourself (docs/deploy.md). Not done here: each playbook identity needs the Microsoft Sentinel Responder role on the Sentinel workspace to comment on incidents (see playbooks/README.md); the outputs PLAYBOOK_*_PRINCIPAL_ID name the identities.')
param deployPlaybooks bool = false

@description('Windows of GET files/{sha1}/alerts as calls/seconds, comma-separated (RATE_LIMIT_FILE_ALERTS). Defender allows 100 calls a minute and 1,500 an hour.')
param rateLimitFileAlerts string = '100/60,1500/3600'

@description('Windows of POST alerts/CreateAlertByReference as calls/seconds, comma-separated (RATE_LIMIT_CREATE_ALERT). Defender allows 15 calls a minute.')
param rateLimitCreateAlert string = '15/60'

@description('Windows of GET files/{id} (file information: resolves a SHA-256 to its SHA-1) as calls/seconds, comma-separated (RATE_LIMIT_FILE_INFO). Defender allows 100 calls a minute and 1,500 an hour.')
param rateLimitFileInfo string = '100/60,1500/3600'

@description('Windows of advanced hunting (Microsoft Graph\'s runHuntingQuery, behind every hunting route of the gateway) as calls/seconds, comma-separated, per tenant (RATE_LIMIT_HUNTING). Graph allows at least 45 calls a minute per tenant (more for a large tenant) and Defender\'s hunting API 1,500 an hour; Graph\'s CPU allocation is honoured apart (its CPU 429 blocks every instance until the time it gives).')
param rateLimitHunting string = '45/60,1500/3600'

@minValue(0)
@maxValue(3600)
@description('Seconds within which identical hunting queries (same tenant, same Query and Timespan, byte for byte) share one Graph call (HUNTING_SHARE_SECONDS). 0 (default) turns sharing off: hunting results change by the second and a playbook that runs a query again expects a fresh answer.')
param huntingShareSeconds int = 0

@minLength(3)
@maxLength(63)
@description('Name of the blob container, in the app\'s own storage account, that holds asynchronous answers too large for an operation\'s table entity (RESULTS_CONTAINER): large hunting results, deleted with their operation. The identity holds Storage Blob Data Contributor on this container (what the gateway needs) and, for the Functions host, Storage Blob Data Owner on the whole account, which reaches this container too.')
param resultsContainerName string = 'mdegatewayresults'

@minLength(3)
@maxLength(63)
@description('Name of the Azure Table that holds the shared rate-limit state (RATE_LIMIT_TABLE); created here in the app\'s own storage account.')
param rateLimitTableName string = 'mdegatewayratelimits'

@minLength(3)
@maxLength(63)
@description('Name of the Azure Table that holds the shared file-alerts answers (ANSWER_CACHE_TABLE); created here in the app\'s own storage account.')
param answerCacheTableName string = 'mdegatewayanswers'

@minLength(3)
@maxLength(63)
@description('Name of the Azure Table that maps each SHA-256 the gateway resolved to its file\'s SHA-1 (FILE_HASH_TABLE), so a repeated SHA-256 costs no file-information call; created here in the app\'s own storage account.')
param fileHashTableName string = 'mdegatewayfilehashes'

@minValue(0)
@maxValue(3600)
@description('Seconds a successful file-alerts answer is shared by every instance, so a repeated SHA-1 spends no Defender quota (FILE_ALERTS_CACHE_SECONDS); 0 turns the cache off.')
param fileAlertsCacheSeconds int = 60

// Flex Consumption runs Python 3.10 to 3.13 (functionAppConfig.runtime; which ones a region offers:
// `az functionapp list-flexconsumption-runtimes --location <region> --runtime python`); the app's requirements
// support 3.11 to 3.13 (pyproject.toml requires-python, the azure-functions markers in requirements.txt), so the
// choice is their intersection, and the default the newest: Azure Functions supports a Python version until
// Python's own end of life, 3.11 until October 2027, 3.12 until October 2028, 3.13 until October 2029
// (docs/deploy.md). tests/infra/test_deploy_defaults.py checks this list against the requirements.
@allowed([
  '3.11'
  '3.12'
  '3.13'
])
@description('Python version of the function app (functionAppConfig.runtime.version). The newest by default: it is supported longest (3.13 until October 2029).')
param pythonVersion string = '3.13'

// Flex Consumption accepts 1-1000 per the resource schema, but the documented lowest value it accepts is 40
// outside a few preview regions (Azure/azure-functions-host#10523, MicrosoftDocs/azure-docs PR 128255): a lower
// value fails the deployment in most regions, so 40 is both the default and the floor here.
@minValue(40)
@maxValue(1000)
@description('Flex Consumption: the most instances the app may scale out to (40-1000; 40 is the lowest Flex accepts in most regions), the queue functions (which scale on their own) included. Defender\'s limits are per application and tenant and the gateway shares its rate-limit state across instances, so more instances do not buy more Defender calls: they would only wait on a spent budget. host.json caps each instance\'s queue batch (8, then 4 more).')
param maximumInstanceCount int = 40

@minValue(1)
@maxValue(32)
@description('Flex Consumption: HTTP calls one instance runs at once (scaleAndConcurrency.triggers.http.perInstanceConcurrency). Flex runs a Python app one call per instance unless told otherwise; the gateway\'s functions are synchronous and wait on I/O (Table Storage, Defender), so one instance runs as many as its worker has threads (pythonThreadCount), never more.')
param httpPerInstanceConcurrency int = 16

@minValue(12)
@maxValue(32)
@description('Threads of the Python worker (PYTHON_THREADPOOL_THREAD_COUNT) that run the synchronous functions. Unset, the worker takes min(32, CPUs + 4): about 5 on a 2048 MB instance (one vCPU), too few for 16 HTTP calls at once or for host.json\'s queue batch (8 + 4 = 12 messages at once per queue-function instance, each of which may hold its thread while it waits up to 5 s for its slot). At least 12; at least httpPerInstanceConcurrency.')
param pythonThreadCount int = 16

@minValue(0)
@maxValue(3)
@description('Flex Consumption: always-ready instances of each waiting-queue function (WaitCreateAlert, WaitFileAlerts, WaitFileInfo, WaitHunting). A waiting queue holds delayed messages, which the scale controller does not see: with 0 (no standing cost) it scales a waiting function to zero, and a request that waited for its budget also waits for a cold start when it is due. 1 keeps one instance each (billed as always-ready baseline).')
param waitingFunctionsAlwaysReady int = 0

@minLength(3)
@maxLength(43)
@description('Name of the storage queue of asynchronous requests (REQUESTS_QUEUE): queue input from automation and the HTTP calls answered 202. Created beside it: the waiting queues <name>-create-alert, <name>-file-alerts, <name>-file-info and <name>-hunting (requests waiting for one upstream API\'s budget) and every queue\'s <queue>-poison. At most 43 characters, so that the longest of them fits a queue name.')
param requestsQueueName string = 'mde-gateway-requests'

@minLength(3)
@maxLength(63)
@description('Name of the Azure Table that holds asynchronous operations, their status and answers (OPERATIONS_TABLE); created here.')
param operationsTableName string = 'mdegatewayoperations'

// Flex Consumption documents 2048 MB (the default) and 4096 MB instances everywhere; 512 MB only in some regions,
// where it would also leave the worker's 16 threads (pythonThreadCount) a fraction of a vCPU: not offered here.
@allowed([
  2048
  4096
])
@description('Flex Consumption: memory of each instance in MB, 2048 (default; one vCPU) or 4096.')
param instanceMemoryMB int = 2048

@allowed([
  'Standard_ZRS'
  'Standard_LRS'
  'Standard_GZRS'
  'Standard_GRS'
])
@description('Replication of the storage account. Standard_ZRS survives the loss of a zone and belongs with zoneRedundant; use Standard_LRS in a region without availability zones.')
param storageSkuName string = 'Standard_ZRS'

@description('Spread the Flex Consumption instances over availability zones. Needs a region that supports it, and then keeps at least two always-ready instances (billed) per function group.')
param zoneRedundant bool = false

@minValue(30)
@maxValue(730)
@description('Days that Log Analytics keeps the logs and Application Insights telemetry.')
param logRetentionInDays int = 90

@description('Many tenants (an MSSP): the customer tenants the gateway may call Defender in (MDE_TENANTS), each \'<short name>=<tenant id>\' or a bare tenant id. Empty: the home tenant alone. Needs identityType UserAssigned and multitenantAppClientId; each tenant\'s administrator consents to the app and grants it the Defender app roles (scripts/onboard-customer-tenant.sh).')
param customerTenants array = []

@description('Many tenants: client id of the multi-tenant app registration (in this tenant) whose federated credential the gateway\'s user-assigned identity becomes (MDE_MULTITENANT_CLIENT_ID).')
param multitenantAppClientId string = ''

@description('Many tenants: uniqueName of that app registration, to add the federated credential through the Microsoft Graph Bicep extension (federated-credential.bicep; the deployer needs Application.ReadWrite.All). Empty: add it yourself (docs/many-tenants.md).')
param multitenantAppUniqueName string = ''

@description('Many tenants with gatewayAuth=entra: which callers may act for which customer tenants (GATEWAY_TENANT_CALLERS), \'<object id>=<tenant>+<tenant>;...\'.')
param tenantCallers string = ''

@description('Resource id of an existing action group that the gateway\'s alert rules notify (observability.bicep: Defender 429s, poisoned requests, storage or identity down, a backlog not draining). Empty: the rules fire without notifying anyone.')
param alertActionGroupId string = ''

@minValue(60)
@maxValue(86400)
@description('Alert when the oldest operation still waiting for its answer is older than this many seconds.')
param oldestPendingAlertSeconds int = 900

@description('Also grant the app\'s identity the Defender for Endpoint app roles Alert.Read.All, Alert.ReadWrite.All and File.Read.All (file information: SHA-256 to SHA-1), and Microsoft Graph\'s ThreatHunting.Read.All (advanced hunting through Graph\'s runHuntingQuery), through the Microsoft Graph Bicep extension (defender-roles.bicep). The deployer then needs AppRoleAssignment.ReadWrite.All and Application.Read.All in Microsoft Graph (or the Privileged Role Administrator role). False: grant them afterwards with scripts/grant-defender-roles.sh or defender-roles.bicep.')
param grantDefenderAppRoles bool = false

// ---------------------------------------------------------------------------------------------
// Names and shared values
// ---------------------------------------------------------------------------------------------

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName, location))
var baseTags = union(tags, {
  'azd-env-name': environmentName
})
var functionAppName = 'func-mdegw-${resourceToken}'
var planName = 'plan-mdegw-${resourceToken}'
var storageAccountName = 'stmdegw${resourceToken}'
var logAnalyticsName = 'log-mdegw-${resourceToken}'
var appInsightsName = 'appi-mdegw-${resourceToken}'
var identityName = empty(userAssignedIdentityName) ? 'id-mdegw-${resourceToken}' : userAssignedIdentityName
// Blob container that Flex Consumption deploys the app package to.
var deploymentContainerName = 'app-package-${resourceToken}'
var useUserAssigned = (identityType == 'UserAssigned')
var useEntra = (gatewayAuth == 'entra')
// Many tenants need a user-assigned identity (only it can be a federated credential).
var useFederatedCredential = (!empty(customerTenants)) && useUserAssigned && (!empty(multitenantAppUniqueName))
var exchangeAudience = contains(['gcc-high', 'dod'], mdeCloud) ? 'api://AzureADTokenExchangeUSGov' : 'api://AzureADTokenExchange'
// Token audiences the gateway accepts; a caller (the playbooks) requests its token for the first.
// Computed from parameters, not read from entra-auth.bicep's output tokenAudience: the playbooks
// module must not depend on entraAuth, which depends on it (the playbooks' principal ids).
var entraAudiences = empty(entraAllowedAudiences) ? [
  'api://${entraClientId}'
  entraClientId
] : entraAllowedAudiences
// The tenant's v2.0 issuer: the platform's openIdIssuer and the one the gateway checks tokens against.
var entraIssuer = empty(entraOpenIdIssuer) ? '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0' : entraOpenIdIssuer
// The gateway's app roles a playbook's identity is assigned: its call, and the operations it polls.
var enrichPlaybookRoles = [
  'Alerts.Read'
  'Operations.Read'
]
var createPlaybookRoles = [
  'Alerts.Create'
  'Operations.Read'
]
var huntPlaybookRoles = [
  'Hunting.Read'
  'Alerts.Create'
  'Operations.Read'
]
// The playbooks call the gateway with Entra tokens: without Entra authentication they are not deployed.
var usePlaybooks = deployPlaybooks && useEntra
// A list of allowed principals gets the playbooks' identities added; an empty list (any principal
// with a token for the gateway's audience) stays empty, so deploying the playbooks locks out no one.
var addPlaybookPrincipals = usePlaybooks && !empty(entraAllowedPrincipalIds)
// Every principal allowed to call: the platform's list and the gateway's own (GATEWAY_ALLOWED_PRINCIPALS).
var allowedPrincipalIds = concat(entraAllowedPrincipalIds, addPlaybookPrincipals ? [
  playbooks!.outputs.enrichPlaybookPrincipalId
  playbooks!.outputs.createPlaybookPrincipalId
  playbooks!.outputs.huntPlaybookPrincipalId
] : [])

// ---------------------------------------------------------------------------------------------
// Identity
// ---------------------------------------------------------------------------------------------

resource userAssignedIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = if (useUserAssigned) {
  name: identityName
  location: location
  tags: baseTags
}

// ---------------------------------------------------------------------------------------------
// Storage, monitoring and the function app (modules)
// ---------------------------------------------------------------------------------------------

module storage 'storage.bicep' = {
  name: 'storage-${resourceToken}'
  params: {
    storageAccountName: storageAccountName
    location: location
    tags: baseTags
    skuName: storageSkuName
    deploymentContainerName: deploymentContainerName
    rateLimitTableName: rateLimitTableName
    answerCacheTableName: answerCacheTableName
    fileHashTableName: fileHashTableName
    operationsTableName: operationsTableName
    requestsQueueName: requestsQueueName
    resultsContainerName: resultsContainerName
  }
}

module monitoring 'monitoring.bicep' = {
  name: 'monitoring-${resourceToken}'
  params: {
    logAnalyticsName: logAnalyticsName
    appInsightsName: appInsightsName
    location: location
    tags: baseTags
    logRetentionInDays: logRetentionInDays
  }
}

// The workbook and the alert rules over the gateway's telemetry.
module observability 'observability.bicep' = {
  name: 'observability-${resourceToken}'
  params: {
    appInsightsName: monitoring.outputs.appInsightsName
    location: location
    tags: baseTags
    actionGroupId: alertActionGroupId
    oldestPendingAlertSeconds: oldestPendingAlertSeconds
  }
}

// The storage module's output (not the name variable): the app waits for its deployment container.
module functionApp 'function-app.bicep' = {
  name: 'function-app-${resourceToken}'
  params: {
    functionAppName: functionAppName
    planName: planName
    location: location
    tags: baseTags
    identityType: identityType
    userAssignedIdentityId: useUserAssigned ? userAssignedIdentity.id : ''
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    pythonVersion: pythonVersion
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    httpPerInstanceConcurrency: httpPerInstanceConcurrency
    waitingFunctionsAlwaysReady: waitingFunctionsAlwaysReady
    zoneRedundant: zoneRedundant
  }
}

// The app and its telemetry component as the app settings read them (both deployed by the modules above).
resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

// App settings. Flex Consumption rejects FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION,
// WEBSITE_RUN_FROM_PACKAGE and WEBSITE_CONTENT*: the runtime comes from functionAppConfig and the
// package from its deployment container. tests/infra checks every name here against
// shared/catalogue.py CATALOGUE (or the list of settings that the Functions host itself reads).
var baseAppSettings = {
  // Read by the Functions host (identity-based AzureWebJobsStorage) ...
  AzureWebJobsStorage__blobServiceUri: 'https://${storage.outputs.name}.blob.${environment().suffixes.storage}'
  AzureWebJobsStorage__queueServiceUri: 'https://${storage.outputs.name}.queue.${environment().suffixes.storage}'
  // ... and by the gateway (its rate-limit table).
  AzureWebJobsStorage__tableServiceUri: 'https://${storage.outputs.name}.table.${environment().suffixes.storage}'
  AzureWebJobsStorage__credential: 'managedidentity'
  // Telemetry with Entra auth (the component has local auth disabled).
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: useUserAssigned ? 'ClientId=${userAssignedIdentity.properties.clientId};Authorization=AAD' : 'Authorization=AAD'
  // The gateway.
  MDE_CLOUD: mdeCloud
  MDE_CREDENTIAL: 'managed-identity'
  GATEWAY_AUTH: gatewayAuth
  RATE_LIMIT_FILE_ALERTS: rateLimitFileAlerts
  RATE_LIMIT_CREATE_ALERT: rateLimitCreateAlert
  RATE_LIMIT_FILE_INFO: rateLimitFileInfo
  RATE_LIMIT_HUNTING: rateLimitHunting
  HUNTING_SHARE_SECONDS: string(huntingShareSeconds)
  RESULTS_CONTAINER: storage.outputs.resultsContainerName
  REQUESTS_QUEUE: requestsQueueName
  OPERATIONS_TABLE: operationsTableName
  RATE_LIMIT_TABLE: rateLimitTableName
  ANSWER_CACHE_TABLE: answerCacheTableName
  FILE_HASH_TABLE: fileHashTableName
  FILE_ALERTS_CACHE_SECONDS: string(fileAlertsCacheSeconds)
  MAINTENANCE_SCHEDULE: maintenanceSchedule
  // Read by the Python worker: threads for the synchronous functions (see pythonThreadCount).
  PYTHON_THREADPOOL_THREAD_COUNT: string(max(pythonThreadCount, httpPerInstanceConcurrency))
  // With gatewayAuth=entra the gateway checks the callers the platform lets in against the same
  // lists (defence in depth); GATEWAY_ALLOWED_PRINCIPALS, with the playbooks' principals, is set in
  // appSettings below.
  GATEWAY_ALLOWED_APPLICATIONS: join(entraAllowedApplications, ',')
  // With gatewayAuth=entra the gateway validates each bearer token itself, against the issuer and
  // audiences the platform is given.
  GATEWAY_TOKEN_ISSUER: useEntra ? entraIssuer : ''
  GATEWAY_TOKEN_AUDIENCES: useEntra ? join(entraAudiences, ',') : ''
  // Many tenants (empty: the home tenant alone).
  MDE_TENANTS: join(customerTenants, ',')
  // The app the credential was added to, when the template added it: the two cannot disagree.
  MDE_MULTITENANT_CLIENT_ID: useFederatedCredential ? federatedCredential!.outputs.appClientId : multitenantAppClientId
  GATEWAY_TENANT_CALLERS: tenantCallers
}

// Only with a user-assigned identity: which identity the host and the gateway use.
var userAssignedAppSettings = useUserAssigned ? {
  AzureWebJobsStorage__clientId: userAssignedIdentity.properties.clientId
  AZURE_CLIENT_ID: userAssignedIdentity.properties.clientId
} : {}

// Optional: App Service authentication (Entra ID) in front of every function (entra-auth.bicep).
// Token validation only (no client secret, no login flow): unauthenticated requests get 401 and
// only the listed applications / principals get through, the playbooks' identities included.
module entraAuth 'entra-auth.bicep' = if (useEntra) {
  name: 'entra-auth-${resourceToken}'
  params: {
    functionAppName: functionApp.outputs.name
    clientId: entraClientId
    openIdIssuer: entraIssuer
    allowedAudiences: entraAudiences
    allowedApplications: entraAllowedApplications
    allowedPrincipalIds: allowedPrincipalIds
    appUniqueName: entraAppUniqueName
    // The playbooks' identities get the roles of their calls (with entraAppUniqueName).
    callerRoles: usePlaybooks ? [
      {
        principalId: playbooks!.outputs.enrichPlaybookPrincipalId
        roles: enrichPlaybookRoles
      }
      {
        principalId: playbooks!.outputs.createPlaybookPrincipalId
        roles: createPlaybookRoles
      }
      {
        principalId: playbooks!.outputs.huntPlaybookPrincipalId
        roles: huntPlaybookRoles
      }
    ] : []
  }
}

// The app settings, apart from the site: the playbooks need the app's host name, and their principals
// belong in GATEWAY_ALLOWED_PRINCIPALS, so the settings come after them (no cycle, no second writer).
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_13: Checks the v1 'authsettings' schema; this is 'appsettings' (authentication is entraAuth's authsettingsV2).
  // checkov:skip=CKV_AZURE_63: HTTP logging is a property of the 'web' site configuration, not of 'appsettings'.
  // checkov:skip=CKV_AZURE_65: Detailed error pages are a property of the 'web' site configuration, not of 'appsettings'.
  // checkov:skip=CKV_AZURE_66: Failed request tracing is a property of the 'web' site configuration, not of 'appsettings'.
  // checkov:skip=CKV_AZURE_80: .NET Framework version is a property of the 'web' site configuration, not of 'appsettings'.
  // checkov:skip=CKV_AZURE_88: Azure Files mounts are a property of the 'web' site configuration, not of 'appsettings'.
  // checkov:skip=CKV_AZURE_222: Public network access is a property of the site (skipped there with its reason), not of 'appsettings'.
  parent: site
  name: 'appsettings'
  properties: union(baseAppSettings, userAssignedAppSettings, {
    GATEWAY_ALLOWED_PRINCIPALS: join(allowedPrincipalIds, ',')
  })
  dependsOn: [
    functionApp
    monitoring
  ]
}

// Optional: the three Microsoft Sentinel playbooks (playbooks.bicep), Logic Apps that call the gateway
// with their managed identities. They need only the app's host name, so entraAuth (which needs
// their principal ids) runs after them without a cycle. Microsoft Sentinel Responder on the
// workspace is left to the operator (playbooks/README.md): the workspace is usually elsewhere.
module playbooks 'playbooks.bicep' = if (usePlaybooks) {
  name: 'playbooks-${resourceToken}'
  params: {
    gatewayUrl: 'https://${functionApp.outputs.defaultHostName}'
    gatewayAudience: entraAudiences[0]
  }
}

// ---------------------------------------------------------------------------------------------
// Role assignments of the app's identity (guid() names: stable across re-deployments)
// ---------------------------------------------------------------------------------------------

var identityPrincipalId = useUserAssigned ? userAssignedIdentity.properties.principalId : functionApp.outputs.principalId
// Known at the start of the deployment, unlike the principal id: seeds the assignment names.
var identityKey = useUserAssigned ? userAssignedIdentity.id : resourceId('Microsoft.Web/sites', functionAppName)

module roles 'roles.bicep' = {
  name: 'roles-${resourceToken}'
  params: {
    storageAccountName: storage.outputs.name
    resultsContainerName: storage.outputs.resultsContainerName
    appInsightsName: monitoring.outputs.appInsightsName
    identityPrincipalId: identityPrincipalId
    identityKey: identityKey
  }
}

// Many tenants: the user-assigned identity as a federated credential of the multi-tenant app (Microsoft Graph).
module federatedCredential 'federated-credential.bicep' = if (useFederatedCredential) {
  name: 'federated-credential-${resourceToken}'
  params: {
    appUniqueName: multitenantAppUniqueName
    identityPrincipalId: userAssignedIdentity!.properties.principalId
    credentialName: 'mdegw-${resourceToken}'
    audience: exchangeAudience
  }
}

// Optional: the Defender for Endpoint app roles and Graph's ThreatHunting.Read.All, through Microsoft Graph.
module defenderAppRoles 'defender-roles.bicep' = if (grantDefenderAppRoles) {
  name: 'defender-app-roles-${resourceToken}'
  params: {
    principalId: identityPrincipalId
  }
}

// ---------------------------------------------------------------------------------------------
// Outputs (azd stores them in .azure/<env>/.env)
// ---------------------------------------------------------------------------------------------

@description('Azure region of the deployment.')
output AZURE_LOCATION string = location

@description('Entra tenant id of the deployment.')
output AZURE_TENANT_ID string = tenant().tenantId

@description('Resource group of the deployment.')
output AZURE_RESOURCE_GROUP string = resourceGroup().name

@description('Name of the function app.')
output FUNCTION_APP_NAME string = functionApp.outputs.name

@description('Default host name of the function app.')
output FUNCTION_APP_HOSTNAME string = functionApp.outputs.defaultHostName

@description('Base URL of the gateway\'s HTTP API.')
output FUNCTION_APP_URL string = 'https://${functionApp.outputs.defaultHostName}/api'

@description('Kind of managed identity the app uses: SystemAssigned or UserAssigned.')
output IDENTITY_TYPE string = identityType

@description('Object (principal) id of the app\'s managed identity: the principal that needs the Defender app roles.')
output IDENTITY_PRINCIPAL_ID string = identityPrincipalId

@description('Client id of the user-assigned identity; empty with a system-assigned identity.')
output IDENTITY_CLIENT_ID string = useUserAssigned ? userAssignedIdentity.properties.clientId : ''

@description('Name of the storage account (host state, deployment packages, rate-limit table).')
output STORAGE_ACCOUNT_NAME string = storage.outputs.name

@description('Name of the Azure Table holding the rate-limit state.')
output RATE_LIMIT_TABLE string = storage.outputs.rateLimitTableName

@description('Name of the Azure Table holding the shared file-alerts answers.')
output ANSWER_CACHE_TABLE string = storage.outputs.answerCacheTableName

@description('Name of the Azure Table mapping resolved SHA-256 hashes to SHA-1.')
output FILE_HASH_TABLE string = storage.outputs.fileHashTableName

@description('Name of the storage queue of asynchronous requests (its poison queue is <name>-poison).')
output REQUESTS_QUEUE string = storage.outputs.requestsQueueName

@description('Name of the table of asynchronous operations.')
output OPERATIONS_TABLE string = storage.outputs.operationsTableName

@description('Name of the blob container of asynchronous answers too large for a table entity.')
output RESULTS_CONTAINER string = storage.outputs.resultsContainerName

@description('Name of the Application Insights component.')
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.appInsightsName

@description('Name of the Log Analytics workspace.')
output LOG_ANALYTICS_WORKSPACE_NAME string = monitoring.outputs.logAnalyticsName

@description('Resource id of the Azure Monitor workbook over the gateway\'s telemetry.')
output WORKBOOK_ID string = observability.outputs.workbookId

@description('How callers authenticate: function-key or entra.')
output GATEWAY_AUTH string = gatewayAuth

@description('True when this deployment also granted the Defender for Endpoint app roles.')
output DEFENDER_APP_ROLES_GRANTED bool = grantDefenderAppRoles

@description('Object (principal) id of the enrich playbook\'s managed identity (allowed through the gateway\'s Entra authentication; needs Microsoft Sentinel Responder on the workspace). Empty when the playbooks were not deployed (deployPlaybooks false or gatewayAuth not entra).')
output PLAYBOOK_ENRICH_PRINCIPAL_ID string = usePlaybooks ? playbooks!.outputs.enrichPlaybookPrincipalId : ''

@description('Object (principal) id of the create playbook\'s managed identity (allowed through the gateway\'s Entra authentication; needs Microsoft Sentinel Responder on the workspace). Empty when the playbooks were not deployed (deployPlaybooks false or gatewayAuth not entra).')
output PLAYBOOK_CREATE_PRINCIPAL_ID string = usePlaybooks ? playbooks!.outputs.createPlaybookPrincipalId : ''

@description('Object (principal) id of the hunt playbook\'s managed identity (allowed through the gateway\'s Entra authentication; needs Microsoft Sentinel Responder on the workspace). Empty when the playbooks were not deployed (deployPlaybooks false or gatewayAuth not entra).')
output PLAYBOOK_HUNT_PRINCIPAL_ID string = usePlaybooks ? playbooks!.outputs.huntPlaybookPrincipalId : ''
