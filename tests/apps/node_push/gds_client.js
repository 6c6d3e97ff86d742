// usage: node gds_client.js <url> <pkiFolder> <appUri> <csr.der> <outDir>
//   env: REGISTRAR_USER/REGISTRAR_PASSWORD (RegistrationAuthorityAdmin: this client's certificate is self-signed),
//        ENROL_USER/ENROL_PASSWORD (the ApplicationUri and a one-time enrolment token)
// A node-opcua client pulling from certmgr's GDS: RegisterApplication, StartSigningRequest, FinishRequest (polled
// while the GDS answers BadNothingToDo; prints "PENDING <id>" once), then reads the TrustList file.
// Writes <outDir>/certificate.der, <outDir>/issuer0.der ..., <outDir>/trustlist.bin; prints "DONE".
"use strict";
const fs = require("fs");
const path = require("path");
const {
    OPCUAClient, OPCUACertificateManager, MessageSecurityMode, SecurityPolicy, UserTokenType, DataType, StatusCodes,
    NodeId, NodeIdType,
} = require("node-opcua");

const GDS_NAMESPACE = "http://opcfoundation.org/UA/GDS/";
const [url, pkiFolder, appUri, csrFile, outDir] = process.argv.slice(2);

function user(prefix) {
    return { type: UserTokenType.UserName, userName: process.env[prefix + "_USER"], password: process.env[prefix + "_PASSWORD"] };
}

async function call(session, ns, objectId, methodId, inputArguments) {
    const result = await session.call({
        objectId: new NodeId(NodeIdType.NUMERIC, objectId, ns), methodId: new NodeId(NodeIdType.NUMERIC, methodId, ns), inputArguments,
    });
    return result;
}

async function main() {
    const clientCertificateManager = new OPCUACertificateManager({ rootFolder: pkiFolder, automaticallyAcceptUnknownCertificate: false });
    await clientCertificateManager.initialize();
    const client = OPCUAClient.create({
        applicationUri: "urn:certmgr:test:node-gds-client",
        applicationName: "certmgr node-opcua GDS client",
        securityMode: MessageSecurityMode.SignAndEncrypt,
        securityPolicy: SecurityPolicy.Basic256Sha256,
        clientCertificateManager,
        endpointMustExist: false,
        connectionStrategy: { maxRetry: 0 },
    });
    await client.connect(url);
    try {
        let session = await client.createSession(user("REGISTRAR"));
        const ns = (await session.readNamespaceArray()).indexOf(GDS_NAMESPACE);
        const record = await session.constructExtensionObject(new NodeId(NodeIdType.NUMERIC, 1, ns), {
            applicationUri: appUri, applicationType: 2 /* ClientAndServer */, applicationNames: [{ text: "node gateway" }],
            productUri: "urn:certmgr:test:node", discoveryUrls: ["opc.tcp://node-gw.plant1.local:4840"], serverCapabilities: [],
        });
        const registered = await call(session, ns, 141, 146, [{ dataType: DataType.ExtensionObject, value: record }]);
        if (registered.statusCode !== StatusCodes.Good) throw new Error("RegisterApplication: " + registered.statusCode.name);
        const applicationId = registered.outputArguments[0].value;
        await session.close();

        session = await client.createSession(user("ENROL"));
        const csr = fs.readFileSync(csrFile);
        const started = await call(session, ns, 141, 157, [
            { dataType: DataType.NodeId, value: applicationId }, { dataType: DataType.NodeId, value: NodeId.nullNodeId },
            { dataType: DataType.NodeId, value: NodeId.nullNodeId }, { dataType: DataType.ByteString, value: csr },
        ]);
        if (started.statusCode !== StatusCodes.Good) throw new Error("StartSigningRequest: " + started.statusCode.name);
        const requestId = started.outputArguments[0].value;
        let finished;
        for (let attempt = 0; attempt < 300; attempt++) {
            finished = await call(session, ns, 141, 163, [
                { dataType: DataType.NodeId, value: applicationId }, { dataType: DataType.NodeId, value: requestId },
            ]);
            if (finished.statusCode !== StatusCodes.BadNothingToDo) break;
            if (attempt === 0) console.log("PENDING " + requestId.value);
            await new Promise((resolve) => setTimeout(resolve, 200));
        }
        if (finished.statusCode !== StatusCodes.Good) throw new Error("FinishRequest: " + finished.statusCode.name);
        fs.writeFileSync(path.join(outDir, "certificate.der"), finished.outputArguments[0].value);
        (finished.outputArguments[2].value || []).forEach((der, i) => fs.writeFileSync(path.join(outDir, `issuer${i}.der`), der));

        const trustList = await call(session, ns, 141, 204, [
            { dataType: DataType.NodeId, value: applicationId }, { dataType: DataType.NodeId, value: NodeId.nullNodeId },
        ]);
        if (trustList.statusCode !== StatusCodes.Good) throw new Error("GetTrustList: " + trustList.statusCode.name);
        const fileId = trustList.outputArguments[0].value;
        const open = await session.call({ objectId: fileId, methodId: new NodeId(NodeIdType.NUMERIC, 622, ns),
            inputArguments: [{ dataType: DataType.Byte, value: 1 }] });
        if (open.statusCode !== StatusCodes.Good) throw new Error("TrustList.Open: " + open.statusCode.name);
        const handle = open.outputArguments[0].value;
        const chunks = [];
        for (;;) {
            const read = await session.call({ objectId: fileId, methodId: new NodeId(NodeIdType.NUMERIC, 627, ns),
                inputArguments: [{ dataType: DataType.UInt32, value: handle }, { dataType: DataType.Int32, value: 1000 }] });
            if (read.statusCode !== StatusCodes.Good) throw new Error("TrustList.Read: " + read.statusCode.name);
            const data = read.outputArguments[0].value;
            if (!data || data.length === 0) break;
            chunks.push(data);
        }
        await session.call({ objectId: fileId, methodId: new NodeId(NodeIdType.NUMERIC, 625, ns),
            inputArguments: [{ dataType: DataType.UInt32, value: handle }] });
        fs.writeFileSync(path.join(outDir, "trustlist.bin"), Buffer.concat(chunks));
        await session.close();
        console.log("DONE");
    } finally {
        await client.disconnect();
    }
}

main().catch((err) => {
    console.log("FAILED " + (err && err.message ? err.message : err));
    process.exit(1);
});
