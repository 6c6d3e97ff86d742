// usage: node server.js <pkiFolder> [port=0] [adminPassword]   env: ADMIN_PASSWORD, OPERATOR_PASSWORD, APP_URI
"use strict";
const path = require("path");
const { OPCUAServer, OPCUACertificateManager, SecurityPolicy, MessageSecurityMode, makeRoles, WellKnownRoles } = require("node-opcua");
const { installPushCertificateManagementOnServer } = require("node-opcua-server-configuration");

const pkiFolder = path.resolve(process.argv[2] || "./pki");
const port = parseInt(process.argv[3] || "0", 10); // 0 => ephemeral
const adminPassword = process.argv[4] || process.env.ADMIN_PASSWORD || "admin-pw";
const applicationUri = process.env.APP_URI || "urn:certmgr:test:nodeopcua-server";
const users = {
    admin: { password: adminPassword, roles: makeRoles([WellKnownRoles.AuthenticatedUser, WellKnownRoles.SecurityAdmin]) },
    operator: { password: process.env.OPERATOR_PASSWORD || "operator-pw", roles: makeRoles([WellKnownRoles.AuthenticatedUser, WellKnownRoles.Operator]) },
};

async function main() {
    // <pki>/own/certs/certificate.pem, own/private/private_key.pem, trusted/{certs,crl}, issuers/{certs,crl}, rejected
    const serverCertificateManager = new OPCUACertificateManager({ rootFolder: pkiFolder, automaticallyAcceptUnknownCertificate: false });
    // without this node-opcua uses ~/.config/node-opcua-default/UserPKI for the DefaultUserTokenGroup
    const userCertificateManager = new OPCUACertificateManager({ rootFolder: pkiFolder + "-user", automaticallyAcceptUnknownCertificate: false });
    await serverCertificateManager.initialize();
    await userCertificateManager.initialize();

    const server = new OPCUAServer({
        hostname: "127.0.0.1",
        port,
        serverCertificateManager,
        userCertificateManager,
        serverInfo: { applicationUri, productUri: "urn:certmgr:test", applicationName: { text: "certmgr-push-test" } },
        securityModes: [MessageSecurityMode.Sign, MessageSecurityMode.SignAndEncrypt],
        securityPolicies: [SecurityPolicy.Basic256Sha256, SecurityPolicy.Aes128_Sha256_RsaOaep, SecurityPolicy.Aes256_Sha256_RsaPss],
        allowAnonymous: true,
        userManager: {
            isValidUser: (username, password) => !!users[username] && users[username].password === password,
            getUserRoles: (username) => (users[username] ? users[username].roles : []),
        },
    });
    await server.initialize(); // creates the self-signed cert (if missing) and the address space
    await installPushCertificateManagementOnServer(server); // must come after initialize(), before start()
    await server.start();
    process.stdout.write(`READY ${server.endpoints[0].port}\n`);

    let stopping = false;
    const stop = async (sig) => {
        if (stopping) return;
        stopping = true;
        process.stderr.write(`received ${sig}, shutting down\n`);
        try { await server.shutdown(0); } catch (err) { process.stderr.write(`shutdown error ${err}\n`); }
        process.exit(0);
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
}
main().catch((err) => { process.stderr.write(`FATAL ${err && err.stack ? err.stack : err}\n`); process.exit(1); });
