// usage: node server.js <pkiFolder> [port=0]   env: APP_URI
// A plain node-opcua server on a store certmgr wrote (node-opcua layout): it reads its own certificate chain
// from <pki>/own/certs/certificate.pem (leaf first) and its key from own/private/private_key.pem.
"use strict";
const path = require("path");
const { OPCUAServer, OPCUACertificateManager, SecurityPolicy, MessageSecurityMode } = require("node-opcua");

const pkiFolder = path.resolve(process.argv[2] || "./pki");
const port = parseInt(process.argv[3] || "0", 10); // 0 => ephemeral
const applicationUri = process.env.APP_URI || "urn:certmgr:test:node-server";

async function main() {
    const serverCertificateManager = new OPCUACertificateManager({ rootFolder: pkiFolder, automaticallyAcceptUnknownCertificate: false });
    const userCertificateManager = new OPCUACertificateManager({ rootFolder: pkiFolder + "-user", automaticallyAcceptUnknownCertificate: false });
    await serverCertificateManager.initialize();
    await userCertificateManager.initialize();
    const server = new OPCUAServer({
        hostname: "127.0.0.1",
        port,
        serverCertificateManager,
        userCertificateManager,
        certificateFile: path.join(pkiFolder, "own", "certs", "certificate.pem"),
        privateKeyFile: path.join(pkiFolder, "own", "private", "private_key.pem"),
        serverInfo: { applicationUri, productUri: "urn:certmgr:test", applicationName: { text: "certmgr-node-server" } },
        securityModes: [MessageSecurityMode.SignAndEncrypt],
        securityPolicies: [SecurityPolicy.Basic256Sha256],
        allowAnonymous: true,
    });
    await server.initialize();
    await server.start();
    process.stdout.write(`READY ${server.endpoints[0].port}\n`);
    const stop = async () => {
        try { await server.shutdown(0); } finally { process.exit(0); }
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
}
main().catch((err) => { process.stderr.write(`FATAL ${err && err.stack ? err.stack : err}\n`); process.exit(1); });
