// Parameters of infra/main.bicep. `azd up` and `az deployment group create --parameters
// infra/main.bicepparam` both read it; the values come from environment variables (azd loads its
// environment, .azure/<env>/.env, into them) with safe defaults, so that nothing here needs editing:
//
//   azd env set MDEGW_CLOUD eu                       # Defender cloud (see shared/clouds.py)
//   azd env set MDEGW_IDENTITY_TYPE UserAssigned      # SystemAssigned (default) or UserAssigned
//   azd env set MDEGW_GATEWAY_AUTH entra              # function-key (default) or entra
//   azd env set MDEGW_ENTRA_CLIENT_ID <app id>        # with entra: the gateway's app registration
//   azd env set MDEGW_ENTRA_APP_UNIQUE_NAME <name>    # with entra: its uniqueName (app roles by Graph Bicep)
//   azd env set MDEGW_ENTRA_ALLOWED_APPLICATIONS <client id>,<client id>
//   azd env set MDEGW_ENTRA_ALLOWED_PRINCIPAL_IDS <object id>,<object id>
//   azd env set MDEGW_STORAGE_SKU Standard_LRS        # in a region without availability zones
//   azd env set MDEGW_GRANT_DEFENDER_APP_ROLES true   # needs Graph permissions, see README.md (Deploy)
//   azd env set MDEGW_DEPLOY_PLAYBOOKS true           # with entra: the Sentinel playbooks (playbooks/README.md)
//   azd env set MDEGW_WAITING_ALWAYS_READY 1          # keep one instance of each waiting-queue function (billed)
//   azd env set MDEGW_RATE_LIMIT_HUNTING 90/60,3000/3600  # a large tenant whose Graph allows more hunting calls
//
// The MDEGW_ prefix keeps these deployment choices apart from the app's own settings (MDE_CLOUD,
// GATEWAY_AUTH, ...) that a developer may have in the shell for local runs. Parameters not listed
// here keep the defaults of main.bicep (rate limits = Defender's documented limits, Python 3.13, at most
// 40 instances (the lowest maximumInstanceCount Flex Consumption accepts outside a few preview regions) of
// 2048 MB, 90 days of logs, location = the resource group's).

using 'main.bicep'

param environmentName = readEnvironmentVariable('AZURE_ENV_NAME', 'mdegw')

param mdeCloud = readEnvironmentVariable('MDEGW_CLOUD', 'commercial')

param identityType = readEnvironmentVariable('MDEGW_IDENTITY_TYPE', 'SystemAssigned')

param gatewayAuth = readEnvironmentVariable('MDEGW_GATEWAY_AUTH', 'function-key')

param entraClientId = readEnvironmentVariable('MDEGW_ENTRA_CLIENT_ID', '')

param entraAppUniqueName = readEnvironmentVariable('MDEGW_ENTRA_APP_UNIQUE_NAME', '')

param entraAllowedApplications = empty(readEnvironmentVariable('MDEGW_ENTRA_ALLOWED_APPLICATIONS', '')) ? [] : split(readEnvironmentVariable('MDEGW_ENTRA_ALLOWED_APPLICATIONS', ''), ',')

param entraAllowedPrincipalIds = empty(readEnvironmentVariable('MDEGW_ENTRA_ALLOWED_PRINCIPAL_IDS', '')) ? [] : split(readEnvironmentVariable('MDEGW_ENTRA_ALLOWED_PRINCIPAL_IDS', ''), ',')

param storageSkuName = readEnvironmentVariable('MDEGW_STORAGE_SKU', 'Standard_ZRS')

param grantDefenderAppRoles = toLower(readEnvironmentVariable('MDEGW_GRANT_DEFENDER_APP_ROLES', 'false')) == 'true'

param deployPlaybooks = toLower(readEnvironmentVariable('MDEGW_DEPLOY_PLAYBOOKS', 'false')) == 'true'

param waitingFunctionsAlwaysReady = int(readEnvironmentVariable('MDEGW_WAITING_ALWAYS_READY', '0'))

param rateLimitHunting = readEnvironmentVariable('MDEGW_RATE_LIMIT_HUNTING', '45/60,1500/3600')
