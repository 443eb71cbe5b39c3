// oidc-provider ships no type declarations (and @types/oidc-provider trails its major versions):
// this is the part of its v9 API the local OpenID Provider uses, as its documentation
// (docs/README.md of panva/node-oidc-provider) describes it.
declare module "oidc-provider" {
  import type { IncomingMessage, ServerResponse } from "node:http";

  /** Client metadata as registered (RFC 7591 / OpenID Connect Dynamic Client Registration names). */
  export interface ClientMetadata {
    client_id: string;
    client_secret?: string;
    redirect_uris?: string[];
    grant_types?: string[];
    response_types?: string[];
    token_endpoint_auth_method?: string;
    id_token_signed_response_alg?: string;
    application_type?: "web" | "native";
    jwks?: { keys: Record<string, unknown>[] };
    jwks_uri?: string;
    scope?: string;
    [key: string]: unknown;
  }

  export interface InteractionDetails {
    uid: string;
    prompt: { name: string; reasons: string[]; details: Record<string, unknown> };
    params: Record<string, unknown>;
    session?: { accountId?: string; uid?: string };
    grantId?: string;
    returnTo: string;
  }

  export interface InteractionResults {
    login?: { accountId: string; acr?: string; amr?: string[]; remember?: boolean; ts?: number };
    consent?: { grantId?: string };
    error?: string;
    error_description?: string;
    [key: string]: unknown;
  }

  export class Grant {
    constructor(properties: { accountId: string; clientId: string });
    static find(id: string): Promise<Grant | undefined>;
    addOIDCScope(scope: string): void;
    addOIDCClaims(claims: string[]): void;
    addResourceScope(resource: string, scope: string): void;
    save(): Promise<string>;
  }

  export interface ClientModel {
    validate(metadata: ClientMetadata): Promise<void>;
  }

  /** A koa context, as far as a pre-middleware needs it. */
  export interface KoaContext {
    method: string;
    path: string;
    req: IncomingMessage;
    res: ServerResponse;
    status: number;
    body: unknown;
    set(field: string, value: string): void;
  }

  export class Provider {
    constructor(issuer: string, configuration?: Record<string, unknown>);
    readonly issuer: string;
    readonly Grant: typeof Grant;
    readonly Client: ClientModel;
    callback(): (req: IncomingMessage, res: ServerResponse) => void;
    use(middleware: (ctx: KoaContext, next: () => Promise<void>) => Promise<void>): this;
    interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<InteractionDetails>;
    interactionResult(
      req: IncomingMessage,
      res: ServerResponse,
      result: InteractionResults,
      options?: { mergeWithLastSubmission?: boolean },
    ): Promise<string>;
  }

  export default Provider;
}
