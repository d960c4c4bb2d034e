% rebase("layout")
<h1>Sign the guestbook</h1>
% if errors:
<ul class="errors">
% for error in errors:
  <li>{{error}}</li>
% end
</ul>
% end
<form method="post" action="/sign">
  <label>Name <input name="name" value="{{form.get('name', '')}}"></label>
  <label>Message <textarea name="message">{{form.get('message', '')}}</textarea></label>
  <button type="submit">Sign</button>
</form>
<ul id="entries">
% for entry in entries:
  <li><a href="/entries/{{entry['id']}}">{{entry['name']}}</a>: {{entry['message']}}</li>
% end
</ul>
