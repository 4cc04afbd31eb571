//! The `#[service]` attribute of rabbit-rpc: a typed client and a server
//! adapter generated from one trait. Use it as `rabbit_rpc::service`; this
//! crate is its implementation.
//!
//! ```ignore
//! #[rabbit_rpc::service]                 // or #[rabbit_rpc::service(name = "calc")], or (schema)
//! pub trait Calculator {
//!     /// a + b.
//!     async fn add(&self, args: Add) -> Result<i64, Status>;
//!     /// With the call's context first.
//!     async fn negate(&self, context: Context, n: i64) -> Result<i64, Status>;
//!     /// The context alone.
//!     async fn whoami(&self, context: Context) -> Result<String, Status>;
//!     /// Without arguments (the request body is `null`, or empty).
//!     async fn ping(&self) -> Result<(), Status>;
//! }
//! ```
//!
//! generates, beside the trait (whose methods become `fn … -> impl Future +
//! Send`, so a server can run them on any thread; implement them with
//! `async fn`):
//!
//! - `CalculatorServer<T>`: `CalculatorServer::new(impl)` is a
//!   `rabbit_rpc::Service` named `calculator` (the trait's name in
//!   snake_case), method `m` on the queue `calculator.m`, each a typed
//!   procedure (JSON in, JSON out);
//! - `CalculatorClient`: `CalculatorClient::new(client)` with one async
//!   method per trait method taking the argument by reference and returning
//!   `Result<T, rabbit_rpc::Error>`, and a `…_with` variant taking
//!   `rabbit_rpc::CallOptions`.
//!
//! Each method's doc comment is its procedure's doc, which a `describe`
//! request shows (`rabbit-rpc describe`), with JSON as its content types.
//! `#[rabbit_rpc::service(schema)]` adds the JSON Schemas of each method's
//! argument and result (`TypedFn::with_schemas`): their types then
//! implement `schemars::JsonSchema`, and rabbit-rpc's `schema` feature is
//! on.
//!
//! The rules, each checked with a message that says what to change: every
//! item is an `async fn` taking `&self`, then nothing, one argument, a
//! `Context`, or a `Context` and one argument; it returns `Result<T,
//! Status>`; no generics.

use heck::ToSnakeCase;
use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::{
    FnArg, GenericArgument, Ident, ItemTrait, LitStr, Pat, PathArguments, ReturnType, TraitItem,
    TraitItemFn, Type, parse::Parser, parse_macro_input,
};

/// Generates a typed client (`NameClient`) and a server adapter
/// (`NameServer`) from a trait of async methods; see the crate docs.
#[proc_macro_attribute]
pub fn service(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = parse_macro_input!(item as ItemTrait);
    match expand(attr.into(), item) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

/// One method of the service, as the generated code needs it.
struct Method {
    ident: Ident,
    attrs: Vec<syn::Attribute>,
    /// `Some` when the method takes the call's context first.
    context: Option<(Ident, Type)>,
    /// The argument, if any.
    arg: Option<(Ident, Type)>,
    /// `T` of `Result<T, Status>`.
    ok: Type,
    output: Type,
}

/// What `#[service(…)]` says.
struct Options {
    /// The service's name: `name = "…"` if given, else the trait's name in
    /// snake_case.
    name: String,
    /// `schema`: describe each method with JSON Schemas.
    schema: bool,
}

fn expand(attr: TokenStream2, item: ItemTrait) -> syn::Result<TokenStream2> {
    let Options { name, schema } = options(attr, &item.ident)?;
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(
            &item.generics,
            "a service trait takes no generic parameters: its methods' types must be known to \
             encode and decode them",
        ));
    }
    if !item.supertraits.is_empty() {
        return Err(syn::Error::new_spanned(
            &item.supertraits,
            "a service trait has no supertraits: the generated one is Send + Sync + 'static",
        ));
    }
    let methods = item
        .items
        .iter()
        .map(method)
        .collect::<syn::Result<Vec<_>>>()?;
    if methods.is_empty() {
        return Err(syn::Error::new_spanned(
            &item.ident,
            "a service needs at least one `async fn`",
        ));
    }
    let trait_ = service_trait(&item, &methods);
    let server = server(&item, &name, &methods, schema);
    let client = client(&item, &name, &methods);
    Ok(quote! {
        #trait_
        #server
        #client
    })
}

/// The attribute's options: `name = "…"`, `schema`.
fn options(attr: TokenStream2, ident: &Ident) -> syn::Result<Options> {
    let mut name = None;
    let mut schema = false;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("name") {
            let value: LitStr = meta.value()?.parse()?;
            if value.value().is_empty() {
                return Err(syn::Error::new_spanned(
                    &value,
                    "a service name cannot be empty",
                ));
            }
            name = Some(value.value());
            Ok(())
        } else if meta.path.is_ident("schema") {
            if !cfg!(feature = "schema") {
                return Err(meta.error(
                    "`schema` needs rabbit-rpc's `schema` feature: \
                     rabbit-rpc = { version = \"…\", features = [\"schema\"] }",
                ));
            }
            schema = true;
            Ok(())
        } else {
            Err(meta.error("the options are `name = \"…\"` and `schema`"))
        }
    });
    parser.parse2(attr)?;
    Ok(Options {
        name: name.unwrap_or_else(|| ident.to_string().to_snake_case()),
        schema,
    })
}

/// A method's doc comment as text: its `///` lines, each without the one
/// space after `///`, joined by newlines; `None` without one.
fn doc_text(attrs: &[syn::Attribute]) -> Option<String> {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|attr| attr.path().is_ident("doc"))
        .filter_map(|attr| match &attr.meta {
            syn::Meta::NameValue(syn::MetaNameValue {
                value:
                    syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(line),
                        ..
                    }),
                ..
            }) => Some(line.value()),
            _ => None,
        })
        .map(|line| {
            line.strip_prefix(' ')
                .unwrap_or(&line)
                .trim_end()
                .to_owned()
        })
        .collect();
    let text = lines.join("\n").trim().to_owned();
    (!text.is_empty()).then_some(text)
}

fn method(item: &TraitItem) -> syn::Result<Method> {
    let TraitItem::Fn(function) = item else {
        return Err(syn::Error::new_spanned(
            item,
            "a service trait holds only `async fn` methods",
        ));
    };
    let TraitItemFn {
        attrs,
        sig,
        default,
        ..
    } = function;
    if let Some(default) = default {
        return Err(syn::Error::new_spanned(
            default,
            "service methods have no default body: the server's type implements them",
        ));
    }
    if sig.asyncness.is_none() {
        return Err(syn::Error::new_spanned(
            sig.fn_token,
            "service methods are `async fn`",
        ));
    }
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &sig.generics,
            "service methods take no generic parameters",
        ));
    }
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(receiver))
            if receiver.reference.is_some() && receiver.mutability.is_none() => {}
        _ => {
            return Err(syn::Error::new_spanned(
                &sig.inputs,
                "service methods take `&self` first",
            ));
        }
    }
    let typed = inputs.map(typed_arg).collect::<syn::Result<Vec<_>>>()?;
    let (context, arg) = match typed.len() {
        0 => (None, None),
        1 if is_context(&typed[0].1) => (Some(typed[0].clone()), None),
        1 => (None, Some(typed[0].clone())),
        2 => {
            if !is_context(&typed[0].1) {
                return Err(syn::Error::new_spanned(
                    &typed[0].1,
                    "with two arguments, the first is the call's `Context` (rabbit_rpc::Context)",
                ));
            }
            (Some(typed[0].clone()), Some(typed[1].clone()))
        }
        _ => {
            return Err(syn::Error::new_spanned(
                &sig.inputs,
                "service methods take one argument (and optionally the `Context` before it); \
                 put several values in a struct",
            ));
        }
    };
    let ReturnType::Type(_, output) = &sig.output else {
        return Err(syn::Error::new(
            sig.paren_token.span.close(),
            "service methods return `Result<T, Status>`",
        ));
    };
    let ok = result_ok(output).ok_or_else(|| {
        syn::Error::new_spanned(output, "service methods return `Result<T, Status>`")
    })?;
    Ok(Method {
        ident: sig.ident.clone(),
        attrs: attrs.clone(),
        context,
        arg,
        ok,
        output: (**output).clone(),
    })
}

/// Whether `ty` names the call's context (`Context`, `rabbit_rpc::Context`).
fn is_context(ty: &Type) -> bool {
    matches!(ty, Type::Path(path)
        if path.path.segments.last().is_some_and(|segment| segment.ident == "Context"))
}

fn typed_arg(input: &FnArg) -> syn::Result<(Ident, Type)> {
    let FnArg::Typed(typed) = input else {
        return Err(syn::Error::new_spanned(
            input,
            "only the first argument is `&self`",
        ));
    };
    let Pat::Ident(pat) = &*typed.pat else {
        return Err(syn::Error::new_spanned(
            &typed.pat,
            "name each argument (`args: Args`)",
        ));
    };
    Ok((pat.ident.clone(), (*typed.ty).clone()))
}

/// `T` of `Result<T, _>`.
fn result_ok(output: &Type) -> Option<Type> {
    let Type::Path(path) = output else {
        return None;
    };
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(ok) => Some(ok.clone()),
        _ => None,
    }
}

/// The trait, each `async fn` as a `fn` returning a `Send` future.
fn service_trait(item: &ItemTrait, methods: &[Method]) -> TokenStream2 {
    let ItemTrait {
        attrs, vis, ident, ..
    } = item;
    let functions = methods.iter().map(|m| {
        let Method {
            ident,
            attrs,
            context,
            arg,
            output,
            ..
        } = m;
        let context = context.iter().map(|(name, ty)| quote!(#name: #ty));
        let arg = arg.iter().map(|(name, ty)| quote!(#name: #ty));
        quote! {
            #(#attrs)*
            fn #ident(&self #(, #context)* #(, #arg)*)
                -> impl ::core::future::Future<Output = #output> + ::core::marker::Send;
        }
    });
    quote! {
        #(#attrs)*
        #vis trait #ident: ::core::marker::Send + ::core::marker::Sync + 'static {
            #(#functions)*
        }
    }
}

fn server(item: &ItemTrait, name: &str, methods: &[Method], schema: bool) -> TokenStream2 {
    let (vis, trait_ident) = (&item.vis, &item.ident);
    let server = format_ident!("{}Server", trait_ident);
    let doc = format!(
        "Serves a [`{trait_ident}`]: method `m` on the queue `{name}.m`, JSON in and out. Add it \
         to a server with `ServerBuilder::add_service`."
    );
    let procedures = methods.iter().map(|m| {
        let method = &m.ident;
        let method_name = method.to_string();
        let (context_param, context_arg) = match &m.context {
            Some(_) => (quote!(context), quote!(context,)),
            None => (quote!(_context), quote!()),
        };
        let (arg_param, arg_ty, arg) = match &m.arg {
            Some((_, ty)) => (quote!(args), quote!(#ty), quote!(args)),
            None => (quote!(_args), quote!(()), quote!()),
        };
        let schemas = schema.then(|| quote!(.with_schemas()));
        let doc = doc_text(&m.attrs).map(|doc| {
            quote! {
                let service = service.configure(#method_name, |procedure| procedure.doc(#doc));
            }
        });
        quote! {
            let service = {
                let inner = ::std::sync::Arc::clone(&self.inner);
                service.procedure(
                    #method_name,
                    ::rabbit_rpc::typed_fn(
                        move |#context_param: ::rabbit_rpc::Context, #arg_param: #arg_ty| {
                            let inner = ::std::sync::Arc::clone(&inner);
                            async move { inner.#method(#context_arg #arg).await }
                        },
                    )
                    #schemas,
                )
            };
            #doc
        }
    });
    quote! {
        #[doc = #doc]
        #vis struct #server<T> {
            inner: ::std::sync::Arc<T>,
        }

        impl<T: #trait_ident> #server<T> {
            /// Serves `service`.
            #vis fn new(service: T) -> Self {
                Self { inner: ::std::sync::Arc::new(service) }
            }

            /// The procedures, as a service whose methods can still be
            /// configured (`Service::configure`).
            #vis fn into_service(self) -> ::rabbit_rpc::Service {
                let service = ::rabbit_rpc::Service::new(#name);
                #(#procedures)*
                service
            }
        }

        impl<T: #trait_ident> ::core::convert::From<#server<T>> for ::rabbit_rpc::Service {
            fn from(server: #server<T>) -> Self {
                server.into_service()
            }
        }
    }
}

fn client(item: &ItemTrait, name: &str, methods: &[Method]) -> TokenStream2 {
    let (vis, trait_ident) = (&item.vis, &item.ident);
    let client = format_ident!("{}Client", trait_ident);
    let doc = format!(
        "A typed client of [`{trait_ident}`]: each method calls the queue `{name}.method` with \
         its argument as JSON and decodes the JSON reply."
    );
    let calls = methods.iter().map(|m| {
        let Method {
            ident, attrs, arg, ok, ..
        } = m;
        let with = format_ident!("{}_with", ident);
        let queue = format!("{name}.{ident}");
        let with_doc = format!("[`Self::{ident}`] with per-call options.");
        let (param, value) = match arg {
            Some((arg_name, ty)) => (quote!(#arg_name: &#ty,), quote!(#arg_name)),
            None => (quote!(), quote!(&())),
        };
        let docs = attrs.iter().filter(|a| a.path().is_ident("doc"));
        quote! {
            #(#docs)*
            #vis async fn #ident(&self, #param) -> ::core::result::Result<#ok, ::rabbit_rpc::Error> {
                self.client.call_json(#queue, #value).await
            }

            #[doc = #with_doc]
            #vis async fn #with(
                &self,
                #param
                options: &::rabbit_rpc::CallOptions,
            ) -> ::core::result::Result<#ok, ::rabbit_rpc::Error> {
                self.client.call_json_with(#queue, #value, options).await
            }
        }
    });
    let name_lit = LitStr::new(name, Span::call_site());
    quote! {
        #[doc = #doc]
        #[derive(Debug, Clone)]
        #vis struct #client {
            client: ::rabbit_rpc::Client,
        }

        impl #client {
            /// The service's name: method `m` is on the queue `NAME.m`.
            #vis const NAME: &'static str = #name_lit;

            /// Calls the service through `client`.
            #vis fn new(client: ::rabbit_rpc::Client) -> Self {
                Self { client }
            }

            /// The client underneath, for raw calls.
            #vis fn client(&self) -> &::rabbit_rpc::Client {
                &self.client
            }

            #(#calls)*
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expanded(attr: TokenStream2, item: TokenStream2) -> syn::Result<String> {
        expand(attr, syn::parse2(item)?).map(|tokens| tokens.to_string())
    }

    #[test]
    fn names_queues_after_the_trait_in_snake_case_unless_told() {
        let code = expanded(
            quote!(),
            quote! {
                pub trait FibService {
                    async fn fib(&self, n: u64) -> Result<String, Status>;
                }
            },
        )
        .unwrap();
        assert!(code.contains("\"fib_service.fib\""), "{code}");
        let code = expanded(
            quote!(name = "math"),
            quote! {
                pub trait FibService {
                    async fn fib(&self, n: u64) -> Result<String, Status>;
                }
            },
        )
        .unwrap();
        assert!(code.contains("\"math.fib\""), "{code}");
    }

    #[test]
    fn doc_comments_become_each_procedures_doc_and_schema_asks_for_schemas() {
        let item = quote! {
            pub trait Calculator {
                /// a + b.
                ///
                ///  Indented.
                async fn add(&self, args: Add) -> Result<i64, Status>;
                async fn undocumented(&self) -> Result<(), Status>;
            }
        };
        let code = expanded(quote!(), item.clone()).unwrap();
        assert!(
            code.contains(r#"procedure . doc ("a + b.\n\n Indented.")"#),
            "{code}"
        );
        assert_eq!(code.matches("procedure . doc").count(), 1, "{code}");
        assert!(!code.contains("with_schemas"), "{code}");
        if cfg!(feature = "schema") {
            let code = expanded(quote!(schema), item).unwrap();
            assert_eq!(code.matches(". with_schemas ()").count(), 2, "{code}");
        } else {
            let error = expanded(quote!(schema), item).unwrap_err().to_string();
            assert!(error.contains("rabbit-rpc's `schema` feature"), "{error}");
        }
    }

    #[test]
    fn says_what_to_change() {
        let cases = [
            (
                quote!(
                    trait T {
                        fn f(&self, a: u8) -> Result<u8, S>;
                    }
                ),
                "service methods are `async fn`",
            ),
            (
                quote!(
                    trait T {
                        async fn f(a: u8) -> Result<u8, S>;
                    }
                ),
                "take `&self` first",
            ),
            (
                quote!(
                    trait T {
                        async fn f(&self, a: u8, b: u8) -> Result<u8, S>;
                    }
                ),
                "the first is the call's `Context`",
            ),
            (
                quote!(
                    trait T {
                        async fn f(&self, a: u8) -> u8;
                    }
                ),
                "return `Result<T, Status>`",
            ),
            (
                quote!(
                    trait T<X> {
                        async fn f(&self, a: X) -> Result<u8, S>;
                    }
                ),
                "no generic parameters",
            ),
            (
                quote!(
                    trait T {
                        const N: u8;
                    }
                ),
                "only `async fn`",
            ),
            (
                quote!(
                    trait T {}
                ),
                "at least one",
            ),
        ];
        for (item, message) in cases {
            let error = expanded(quote!(), item).unwrap_err().to_string();
            assert!(error.contains(message), "{error}");
        }
        let error = expanded(
            quote!(nom = "x"),
            quote!(
                trait T {
                    async fn f(&self) -> Result<(), S>;
                }
            ),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("the options are `name = \"…\"` and `schema`"),
            "{error}"
        );
    }
}
